// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.Versioning;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Tracking;

/// <summary>
/// Pages of guest memory written by this process's own threads (emulated devices, the VMM), from userfaultfd
/// asynchronous write-protect and <c>PAGEMAP_SCAN</c>, reported in guest-physical space.
/// </summary>
/// <remarks>
/// <para>It sees only writes through this process's page tables: not vCPU writes (KVM's dirty log sees those), not
/// device DMA (the IOMMU or the device sees those), not writes by other processes.</para>
/// <para>Start registers every region in write-protect mode and protects it (a clean epoch). A read scans the
/// written pages and, for a clearing read, re-protects exactly them in the same call; when the kernel stops early
/// (its region buffer full, a huge page split) the scan is re-issued from <c>walk_end</c> until the range is covered.
/// Thread safety: as <see cref="IDirtyTracker"/>; writers may keep writing during a read.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed class UserfaultfdTracker : DirtyTrackerBase
{
    private readonly HostMemoryRegion[] _regions;
    private readonly IWriteProtectPort _port;
    private readonly ulong[] _scratch = new ulong[4096];
    private PageRegion[] _buffer = new PageRegion[4096];
    private long _scans;
    private long _reissues;

    /// <summary>Creates a tracker over guest memory regions this process maps.</summary>
    /// <param name="regions">Disjoint, page-aligned regions.</param>
    /// <param name="name">A name; <c>uffd</c> by default.</param>
    /// <param name="port">The write tracking: <see cref="UserfaultfdWriteProtectPort"/> (the kernel's) by default, or the emulator of DirtyLog.Testing.</param>
    /// <exception cref="ArgumentException">No region, or a region not page-aligned.</exception>
    public UserfaultfdTracker(IEnumerable<HostMemoryRegion> regions, string? name = null, IWriteProtectPort? port = null)
        : base(name ?? "uffd", DirtyAddressSpace.GuestPhysical, 4096)
    {
        ArgumentNullException.ThrowIfNull(regions);
        _port = port ?? new UserfaultfdWriteProtectPort();
        _regions = regions.OrderBy(r => r.GuestAddress).ToArray();
        if (_regions.Length == 0)
        {
            throw new ArgumentException("At least one memory region is needed.", nameof(regions));
        }

        foreach (HostMemoryRegion r in _regions)
        {
            if ((((ulong)r.HostAddress | r.GuestAddress | r.Length) & 4095) != 0 || r.Length == 0)
            {
                throw new ArgumentException($"Region {r} is not page-aligned.", nameof(regions));
            }
        }
    }

    /// <summary>PAGEMAP_SCAN calls made.</summary>
    public long Scans => Interlocked.Read(ref _scans);

    /// <summary>Scans re-issued from <c>walk_end</c> because the kernel stopped early.</summary>
    public long Reissues => Interlocked.Read(ref _reissues);

    /// <inheritdoc/>
    public override IReadOnlyList<AddressRange> Coverage => _regions.Select(r => new AddressRange(r.GuestAddress, r.Length)).ToArray();

    /// <inheritdoc/>
    public override bool CanReadWithoutClear => true;

    /// <summary>Regions per PAGEMAP_SCAN call (tests make it small to force early stops).</summary>
    internal int RegionBufferLength
    {
        get => _buffer.Length;
        set => _buffer = new PageRegion[value];
    }

    /// <inheritdoc/>
    protected override void OnStart() => _port.Arm(_regions.Select(r => (r.HostAddress, r.Length)).ToArray());

    /// <inheritdoc/>
    protected override void OnStop() => _port.Disarm();

    /// <inheritdoc/>
    protected override ulong ReadCore(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode)
    {
        ulong chunkBytes = (ulong)_scratch.Length * 64 * 4096;
        ulong count = 0;
        foreach (HostMemoryRegion region in _regions)
        {
            AddressRange piece = new AddressRange(region.GuestAddress, region.Length).Intersect(range);
            for (ulong gpa = piece.Start; gpa < piece.End; gpa += Math.Min(chunkBytes, piece.End - gpa))
            {
                ulong length = Math.Min(chunkBytes, piece.End - gpa);
                ulong host = (ulong)region.HostAddress + (gpa - region.GuestAddress);
                Span<ulong> words = _scratch.AsSpan(0, (int)((length / 4096 + 63) / 64));
                words.Clear();
                ScanChunk(host, host + length, words, mode == DirtyReadMode.Clear);
                count += Deliver(words, length / 4096, gpa, sink);
            }
        }

        return count;
    }

    private void ScanChunk(ulong start, ulong end, Span<ulong> words, bool reprotect)
    {
        for (ulong cursor = start; cursor < end;)
        {
            int n = _port.ScanWritten(cursor, end, _buffer, reprotect, out ulong walkEnd);
            Interlocked.Increment(ref _scans);
            for (int i = 0; i < n; i++)
            {
                for (ulong page = (_buffer[i].Start - start) / 4096; page < (_buffer[i].End - start) / 4096; page++)
                {
                    words[(int)(page / 64)] |= 1UL << (int)(page % 64);
                }
            }

            if (walkEnd >= end)
            {
                break;
            }

            if (walkEnd <= cursor)
            {
                // Stopping here would drop the rest of the chunk silently: fail the read instead (the tracker faults
                // and its coverage is treated as dirty).
                throw new InvalidOperationException($"PAGEMAP_SCAN made no progress at 0x{cursor:x} (walk_end 0x{walkEnd:x}).");
            }

            Interlocked.Increment(ref _reissues);
            cursor = walkEnd;
        }
    }
}
