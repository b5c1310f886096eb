// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using DirtyLog.Memory;

namespace DirtyLog.Migration;

/// <summary>
/// The page stream's wire format, version 1, little-endian. A 24-byte stream header, then 24-byte records, data
/// records followed by their pages:
/// <code>
/// header: "DLPS" | version u16 | reserved u16 | page size u32 | reserved u32 | memory bytes u64
/// record: kind u8 | reserved u8 | reserved u16 | pages u32 | first page (or round, or total) u64 | crc u32 | reserved u32
/// kinds:  1 data (pages follow) | 2 zero pages | 3 round end | 4 end of stream | 5 memory digest
/// </code>
/// The optional memory digest record, just before the end, holds the CRC-32C of the source's whole memory, taken
/// with the guest paused: the destination compares its own memory with it.
/// A record's CRC-32C covers its header with the CRC field zeroed, then its pages. The end record's CRC field holds
/// the CRC-32C of every earlier record's CRC in order, so a dropped, repeated or reordered record is caught.
/// </summary>
internal static class PageStreamFormat
{
    public const uint Magic = 0x5350_4C44; // "DLPS"
    public const ushort Version = 1;
    public const int HeaderBytes = 24;
    public const int RecordBytes = 24;
    public const int MinPageSize = 4096;
    public const int MaxPageSize = 2 << 20;   // an x86 huge page: one data record of one page still fits a pipe segment run
    public const int MaxDataBytes = 1 << 20;  // a data record's payload, at most (or one page, if larger): bounds every buffer
    public const int MaxZeroPages = 1 << 20;

    /// <summary>The most pages a data record of this page size holds: 1 MiB of them, or one.</summary>
    public static int MaxDataPages(int pageSize) => Math.Max(1, MaxDataBytes / pageSize);

    /// <summary>The one rule for page sizes, on both ends: a power of two from 4 KiB to 2 MiB.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not such a size.</exception>
    public static void CheckPageSize(int pageSize, string paramName)
    {
        if (pageSize < MinPageSize || pageSize > MaxPageSize || !BitOperations.IsPow2(pageSize))
        {
            throw new ArgumentOutOfRangeException(paramName, pageSize, $"The page size must be a power of two from {MinPageSize} to {MaxPageSize} bytes.");
        }
    }

    public const byte Data = 1, Zero = 2, RoundEnd = 3, End = 4, Digest = 5;

    /// <summary>The CRC-32C of guest memory, a page at a time.</summary>
    public static uint MemoryDigest(GuestMemoryView memory, ulong bytes)
    {
        uint crc = ~0u;
        for (ulong address = 0; address < bytes; address += 1 << 20)
        {
            crc = Crc(crc, memory.Slice(address, (int)Math.Min(1UL << 20, bytes - address)));
        }

        return crc;
    }

    public static void WriteHeader(Span<byte> span, uint pageSize, ulong memoryBytes)
    {
        span[..HeaderBytes].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(span, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], pageSize);
        BinaryPrimitives.WriteUInt64LittleEndian(span[16..], memoryBytes);
    }

    public static void WriteRecord(Span<byte> span, byte kind, uint pages, ulong value)
    {
        span[..RecordBytes].Clear();
        span[0] = kind;
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], pages);
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], value);
    }

    public static void WriteCrc(Span<byte> record, uint crc) => BinaryPrimitives.WriteUInt32LittleEndian(record[16..], crc);

    public static uint ReadCrc(ReadOnlySpan<byte> record) => BinaryPrimitives.ReadUInt32LittleEndian(record[16..]);

    /// <summary>CRC-32C (hardware where there is some), eight bytes a step.</summary>
    public static uint Crc(uint crc, ReadOnlySpan<byte> data)
    {
        ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(data);
        foreach (ulong w in words)
        {
            crc = BitOperations.Crc32C(crc, w);
        }

        foreach (byte b in data[(words.Length * 8)..])
        {
            crc = BitOperations.Crc32C(crc, b);
        }

        return crc;
    }

    /// <summary>The CRC of a record header with its CRC field taken as zero.</summary>
    public static uint HeaderCrc(ReadOnlySpan<byte> record)
    {
        Span<byte> copy = stackalloc byte[RecordBytes];
        record[..RecordBytes].CopyTo(copy);
        WriteCrc(copy, 0);
        return Crc(~0u, copy);
    }
}
