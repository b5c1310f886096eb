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

    /// <summary>Pages per burst.</summary>
    public const uint BurstPages = 64;

    private const int ParamsOffset = 0x1E0;

    /// <summary>Creates the guest of a working set.</summary>
    /// <param name="firstPage">Its first page: at or above 1 MiB, clear of the sector and the stack.</param>
    /// <param name="pages">Its pages.</param>
    /// <param name="paceCycles">TSC cycles each burst takes at least (0: unthrottled).</param>
    public BootGuest(ulong firstPage, ulong pages, uint paceCycles)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(firstPage, 256UL);
        ArgumentOutOfRangeException.ThrowIfZero(pages);
        FirstPage = firstPage;
        Pages = pages;
        PaceCycles = paceCycles;
    }

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
        BinaryPrimitives.WriteUInt32LittleEndian(parameters[8..], BurstPages);
        BinaryPrimitives.WriteUInt32LittleEndian(parameters[12..], PaceCycles);
        return sector;
    }

    /// <summary>TSC cycles per burst for a rate of pages per second, at the vCPU's TSC frequency.</summary>
    public static uint PaceFor(int pagesPerSecond, uint tscKhz) =>
        pagesPerSecond <= 0 ? 0 : (uint)Math.Min(uint.MaxValue, (ulong)tscKhz * 1000 * BurstPages / (ulong)pagesPerSecond);

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
