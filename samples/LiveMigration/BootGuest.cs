// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.IO;
using DirtyLog.Memory;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// The sample's guest (Guest/boot.S): a boot sector that increments the first byte of every page of a working set,
/// pass after pass, pacing itself; and the check of its invariant, which a lost page breaks.
/// </summary>
/// <remarks>
/// Invariant whenever the vCPU is stopped: the first bytes of the working set's pages, in order, are one run of v+1
/// followed by one run of v (mod 256), either run possibly empty. Thread safety: immutable.
/// </remarks>
internal sealed class BootGuest
{
    /// <summary>Where a boot sector is loaded and entered, in real mode.</summary>
    public const ulong LoadAddress = 0x7c00;

    /// <summary>The port the guest writes after each burst: the run loop's chance to pause it.</summary>
    public const ushort BurstPort = 0x80;

    /// <summary>The serial port the guest writes a byte to after each pass.</summary>
    public const ushort SerialPort = 0x3f8;

    /// <summary>Pages per burst, at rates where a burst takes at most a few milliseconds.</summary>
    public const uint BurstPages = 64;

    /// <summary>The most TSC cycles a burst may be paced to: the guest compares 32-bit deltas, which wrap.</summary>
    public const uint MaxPaceCycles = int.MaxValue;

    private const int ParamsOffset = 0x1E0;

    /// <summary>Creates the guest of a working set.</summary>
    /// <param name="firstPage">Its first page: at or above 1 MiB, clear of the sector and the stack.</param>
    /// <param name="pages">Its pages.</param>
    /// <param name="paceCycles">TSC cycles each burst takes at least (0: unthrottled).</param>
    /// <param name="burstPages">Pages per burst (1 for a guest that is almost idle).</param>
    public BootGuest(ulong firstPage, ulong pages, uint paceCycles, uint burstPages = BurstPages)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(firstPage, 256UL);
        ArgumentOutOfRangeException.ThrowIfZero(pages);
        ArgumentOutOfRangeException.ThrowIfZero(burstPages);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(paceCycles, MaxPaceCycles);
        FirstPage = firstPage;
        Pages = pages;
        PaceCycles = paceCycles;
        Burst = burstPages;
    }

    /// <summary>Pages per burst.</summary>
    public uint Burst { get; }

    public ulong FirstPage { get; }

    public ulong Pages { get; }

    public uint PaceCycles { get; }

    /// <summary>The sector, with this guest's parameters patched in.</summary>
    public byte[] Sector()
    {
        using Stream stream = typeof(BootGuest).Assembly.GetManifestResourceStream("boot.bin")
            ?? throw new InvalidOperationException("The boot sector is not embedded.");
        var sector = new byte[512];
        stream.ReadExactly(sector);
        Span<byte> parameters = sector.AsSpan(ParamsOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(parameters, checked((uint)FirstPage));
        BinaryPrimitives.WriteUInt32LittleEndian(parameters[4..], checked((uint)Pages));
        BinaryPrimitives.WriteUInt32LittleEndian(parameters[8..], Burst);
        BinaryPrimitives.WriteUInt32LittleEndian(parameters[12..], PaceCycles);
        return sector;
    }

    /// <summary>A guest of a working set, paced to a rate of pages per second at the vCPU's TSC frequency (0: unthrottled).</summary>
    public static BootGuest Paced(ulong firstPage, ulong pages, int pagesPerSecond, uint tscKhz)
    {
        if (pagesPerSecond <= 0)
        {
            return new BootGuest(firstPage, pages, 0);
        }

        uint burst = pagesPerSecond >= 640 ? BurstPages : 1; // slow guests pace page by page
        ulong cycles = (ulong)tscKhz * 1000 * burst / (ulong)pagesPerSecond;
        return new BootGuest(firstPage, pages, (uint)Math.Min(MaxPaceCycles, cycles), burst);
    }

    /// <summary>
    /// Checks the invariant in <paramref name="memory"/>: the first bytes form one run of v+1 then one run of v.
    /// </summary>
    /// <returns><see langword="null"/> when it holds; otherwise what is wrong, naming the first page that breaks it.</returns>
    public string? CheckInvariant(GuestMemoryView memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        byte First(ulong i) => memory.Slice((FirstPage + i) * 4096, 1)[0];
        byte head = First(0);
        ulong i = 1;
        while (i < Pages && First(i) == head)
        {
            i++;
        }

        if (i == Pages)
        {
            return head == 0 ? "the guest never ran: every first byte is 0" : null;
        }

        byte tail = First(i);
        if ((byte)(tail + 1) != head)
        {
            return $"page {FirstPage + i} holds {tail} after a run of {head}: not one step of one";
        }

        for (; i < Pages; i++)
        {
            if (First(i) != tail)
            {
                return $"page {FirstPage + i} holds {First(i)} where the run of {tail} should go on: a lost page";
            }
        }

        return null;
    }

    /// <summary>
    /// Pages the guest has written since it started (its pace over time): whole passes, counted by its serial port
    /// writes, plus the run of pages written so far in the current pass. Exact while the vCPU is paused; within a few
    /// pages while it runs.
    /// </summary>
    /// <param name="passes">The serial port writes seen so far (one per finished pass).</param>
    /// <param name="memory">Guest memory.</param>
    public long PagesWritten(long passes, GuestMemoryView memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        // The init loop sets every first byte to 1; pass n raises them to n + 2. A run of head then head - 1 means the
        // current pass got that far; all equal means a pass ended, its serial write seen (head = passes + 1) or not yet.
        byte head = memory.Slice(FirstPage * 4096, 1)[0];
        ulong position = 1;
        while (position < Pages && memory.Slice((FirstPage + position) * 4096, 1)[0] == head)
        {
            position++;
        }

        if (position < Pages)
        {
            return passes * (long)Pages + (long)position;
        }

        return (head == (byte)(passes + 2) ? passes + 1 : passes) * (long)Pages;
    }

    /// <summary>The first bytes of the working set now.</summary>
    public byte[] FirstBytes(GuestMemoryView memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var bytes = new byte[Pages];
        for (ulong i = 0; i < Pages; i++)
        {
            bytes[i] = memory.Slice((FirstPage + i) * 4096, 1)[0];
        }

        return bytes;
    }

    /// <summary>Pages whose first byte changed since <paramref name="before"/>: the guest's progress.</summary>
    public ulong PagesChangedSince(byte[] before, GuestMemoryView memory)
    {
        ArgumentNullException.ThrowIfNull(before);
        byte[] now = FirstBytes(memory);
        ulong changed = 0;
        for (int i = 0; i < now.Length; i++)
        {
            changed += now[i] != before[i] ? 1UL : 0;
        }

        return changed;
    }
}
