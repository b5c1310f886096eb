// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Testing;

/// <summary>
/// Emulated userfaultfd asynchronous write-protect and <c>PAGEMAP_SCAN</c> over emulated guest memory: the
/// <see cref="IWriteProtectPort"/> of <see cref="Tracking.UserfaultfdTracker"/> without the kernel, with its rules.
/// </summary>
/// <remarks>
/// <para>Rules kept: arming needs page-aligned ranges inside the memory (<c>EINVAL</c>); a scan needs a page-aligned
/// start (<c>EINVAL</c>) and only armed pages (<c>EPERM</c>, as for a range not registered for asynchronous
/// write-protect); written pages come back as regions in address order, neighbours merged, with
/// <c>PAGE_IS_WRITTEN</c>; a full region buffer stops the walk at the first page that would need another region, and
/// <c>walk_end</c> says where. On request a scan also stops early every so many pages (as a huge page split does) or
/// makes no progress at all (a kernel defect the tracker must not turn into silent loss).</para>
/// <para>Writes go through <see cref="Write"/> (the process's own threads writing guest memory). Thread safety: any
/// thread; one lock serialises writes and scans.</para>
/// </remarks>
public sealed class EmulatedWriteProtect : IWriteProtectPort
{
    /// <summary><c>PAGE_IS_WRITTEN</c>, the category the scan reports.</summary>
    public const ulong PageIsWritten = 2;

    private readonly Lock _gate = new();
    private readonly EmulatedGuestMemory _memory;
    private readonly ulong _base;
    private readonly ulong[] _armed;
    private readonly ulong[] _written;

    /// <summary>Creates write tracking over <paramref name="memory"/>, with nothing armed.</summary>
    /// <param name="memory">The memory whose writes are tracked: host addresses are its base plus an offset.</param>
    public EmulatedWriteProtect(EmulatedGuestMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        _memory = memory;
        _base = (ulong)memory.AsView().Address;
        ulong words = ((memory.Size / 4096) + 63) / 64;
        _armed = new ulong[words];
        _written = new ulong[words];
    }

    /// <inheritdoc/>
    public string Name => "emulated-userfaultfd";

    /// <summary>When set, every scan also stops after walking this many pages (as a huge page split stops the kernel's walk).</summary>
    public int? StopEveryPages { get; set; }

    /// <summary>Makes the next scan report nothing and stop where it started: no progress.</summary>
    public bool StallNextScan { get; set; }

    /// <summary>Scans made.</summary>
    public long Scans { get; private set; }

    /// <summary>A write by one of this process's threads: 8 bytes at <paramref name="hostAddress"/>; tracked where armed.</summary>
    /// <param name="hostAddress">A host address inside the memory.</param>
    /// <param name="value">The value.</param>
    public void Write(nint hostAddress, ulong value)
    {
        lock (_gate)
        {
            ulong offset = (ulong)hostAddress - _base;
            _memory.WriteUInt64(offset & ~7UL, value);
            ulong page = offset / 4096;
            if (Test(_armed, page))
            {
                Set(_written, page, true);
            }
        }
    }

    /// <inheritdoc/>
    public void Arm(IReadOnlyList<(nint Start, ulong Length)> ranges)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        lock (_gate)
        {
            foreach ((nint start, ulong length) in ranges)
            {
                ulong offset = (ulong)start - _base;
                if (((offset | length) & 4095) != 0 || length == 0 || !_memory.Contains(offset, length))
                {
                    throw Error("UFFDIO_REGISTER", Errno.EINVAL);
                }
            }

            Array.Clear(_armed);
            Array.Clear(_written);
            foreach ((nint start, ulong length) in ranges)
            {
                for (ulong page = ((ulong)start - _base) / 4096, end = page + (length / 4096); page < end; page++)
                {
                    Set(_armed, page, true);
                }
            }
        }
    }

    /// <inheritdoc/>
    public void Disarm()
    {
        lock (_gate)
        {
            Array.Clear(_armed);
            Array.Clear(_written);
        }
    }

    /// <inheritdoc/>
    public int ScanWritten(ulong start, ulong limit, Span<PageRegion> regions, bool reprotect, out ulong walkEnd)
    {
        lock (_gate)
        {
            Scans++;
            if ((start & 4095) != 0 || limit < start || start < _base || limit - _base > _memory.Size)
            {
                throw Error("PAGEMAP_SCAN", Errno.EINVAL);
            }

            if (StallNextScan)
            {
                StallNextScan = false;
                walkEnd = start;
                return 0;
            }

            int count = 0;
            ulong walked = 0;
            for (ulong address = start; address < limit; address += 4096, walked++)
            {
                ulong page = (address - _base) / 4096;
                if (!Test(_armed, page))
                {
                    throw Error("PAGEMAP_SCAN", Errno.EPERM);
                }

                if (StopEveryPages is { } every && walked == (ulong)every)
                {
                    walkEnd = address;
                    return count;
                }

                if (!Test(_written, page))
                {
                    continue;
                }

                if (count > 0 && regions[count - 1].End == address)
                {
                    regions[count - 1] = new PageRegion(regions[count - 1].Start, address + 4096, PageIsWritten);
                }
                else if (count == regions.Length)
                {
                    walkEnd = address;
                    return count;
                }
                else
                {
                    regions[count++] = new PageRegion(address, address + 4096, PageIsWritten);
                }

                if (reprotect)
                {
                    Set(_written, page, false);
                }
            }

            walkEnd = limit;
            return count;
        }
    }

    private static bool Test(ulong[] bits, ulong page) => (bits[page / 64] & (1UL << (int)(page % 64))) != 0;

    private static void Set(ulong[] bits, ulong page, bool value)
    {
        if (value)
        {
            bits[page / 64] |= 1UL << (int)(page % 64);
        }
        else
        {
            bits[page / 64] &= ~(1UL << (int)(page % 64));
        }
    }

    private static KernelException Error(string request, Errno errno) => new("ioctl", $"{request} on the emulated userfaultfd", errno);
}
