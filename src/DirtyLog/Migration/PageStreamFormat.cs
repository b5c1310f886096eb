// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using DirtyLog.Memory;
using DirtyLog.Tracking;

namespace DirtyLog.Migration;

/// <summary>
/// The page stream's wire format, version 3 (one connection) and 4 (a control connection and data connections),
/// little-endian. A 24-byte stream header, then 24-byte records, data and state records followed by their bytes:
/// <code>
/// header: "DLPS" | version u16 | data connections u16 (version 4: 1 to 64 asked; else 0) | page size u32 | flags u32 | memory bytes u64 (of every region at the start)
///         flags (version 4; else 0): bit 0, the source may switch to post-copy (the other bits are 0)
/// record: kind u8 | reserved u8 | reserved u16 | count u32 | value u64 | crc u32 | reserved u32
/// kinds:  1 data: count pages from page value follow
///         2 zero pages: count pages from page value
///         3 round end: value is the round
///         4 end of stream: value is the total of pages; crc chains every earlier record's crc
///         5 memory digest (after the end, optional): value is the source memory's digest
///         6 state: value name bytes (UTF-8, 1 to 255), then count payload bytes (at most 16 MiB) follow
///         7 region added: count pages from page value are guest memory (before any record of them; all fresh)
///         8 region removed: the region of count pages from page value, exactly as added, is no longer guest memory
///         9 round begin (version 4 with data connections, on the control connection): value is the round
///        10 post-copy discard (post-copy granted, between rounds): count runs (1 to 65,536) of value pages in all follow,
///           16 bytes each (first page u64, pages u64), in page order, not overlapping: pages the source wrote after it sent them
///        11 post-copy (post-copy granted; ends the stream in place of the end record, with the same value and crc): the
///           source's guest is stopped for good, and the pages of the discard records are not valid at the destination
/// ack:    "DLAK" | reserved u32 | round applied u64 | stream bytes read u64   (destination to source)
///         round 2^64-1: the end (a migration session sends it once the guest resumed there)
///         round 2^64-2: refused; the last field is the length of a UTF-8 reason (at most 1 KiB) that follows
///         round 2^64-3: the header was accepted (a migration session waits for it before the first page); version 4:
///                      the reserved u32 is the data connections granted (0 to those asked) in its low 16 bits, and
///                      bit 31 when post-copy is granted (it was offered); the last field is the connections' token
///         round 2^64-4: post-copy started: the guest runs at the destination; its page requests follow on this direction
/// data connection (version 4, once granted): "DLPL" | version u16 | index u16 | page size u32 | connections u32 | token u64,
///         then data and zero-page records of each round, a round-end record after its share of each, and an end record
///         whose value is its pages and whose crc chains its records' crcs
/// </code>
/// After a post-copy record, the control connection carries the destination's page requests and the source's answers,
/// and each data connection, after its end record, the pages the source pushes (<c>PostCopyFormat</c>).
/// With data connections granted, the control connection carries no page: each round is a round-begin record (after
/// the region changes and state before it), then its round end once the source's data connections carried their share.
/// The destination applies a round's pages only after the control connection's round begin, and reads the round end
/// only once every data connection applied its share: a page sent in two rounds, on two connections, is applied in
/// round order, so the later copy wins.
/// A data record's CRC is the CRC-32C of its header (CRC field zeroed) extended by each page's own CRC-32C in order,
/// so both ends have every page's CRC without a second pass. The memory digest is the CRC-32C of every page's CRC in
/// page order: the destination keeps the CRC of each page it applied (zero pages included), which is its memory at
/// the end of the stream, and the source hashes its stopped memory after the switch-over, outside the downtime; the
/// pages are those of the regions at the end, by guest-physical address. Guest memory is regions: data and zero-page
/// records lie inside one region added and not removed. Version 2 (no region records) is read as one region from
/// page 0 of the header's memory bytes, so snapshot chains written before regions restore.
/// Other records' CRC-32C covers their header (CRC field zeroed) and their bytes. The end record's CRC field holds the
/// CRC-32C of every earlier record's CRC in order, so a dropped, repeated or reordered record is caught.
/// </summary>
internal static class PageStreamFormat
{
    public const uint Magic = 0x5350_4C44; // "DLPS"
    public const ushort Version = 3;
    public const ushort VersionWithoutRegions = 2;
    public const ushort VersionWithDataConnections = 4;
    public const uint DataConnectionMagic = 0x4C50_4C44; // "DLPL"
    public const int MaxDataConnections = 64;
    public const int MaxRegions = 32768; // about the memory slots KVM allows an address space (32,767): more is not a guest
    public const uint AckMagic = 0x4B41_4C44; // "DLAK"
    public const int AckBytes = 24;
    public const ulong EndAcknowledged = ulong.MaxValue;
    public const ulong Refused = ulong.MaxValue - 1;
    public const ulong HeaderAccepted = ulong.MaxValue - 2;
    public const ulong PostCopyStarted = ulong.MaxValue - 3;
    public const uint PostCopyOffered = 1;        // the header's flags
    public const uint PostCopyGranted = 1u << 31; // in the header's acceptance, beside the data connections granted
    public const int MaxDiscardRuns = 65536;      // a discard record's runs: 1 MiB of them at most
    public const int DiscardRunBytes = 16;
    public const int MaxRefusalBytes = 1024;
    public const int MaxStateNameBytes = 255;
    public const int MaxStateBytes = 16 << 20;
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

    public const byte Data = 1, Zero = 2, RoundEnd = 3, End = 4, Digest = 5, State = 6, RegionAdded = 7, RegionRemoved = 8, RoundBegin = 9, Discard = 10, PostCopy = 11;

    /// <summary>The CRC-32C of one page of zeros of this size.</summary>
    public static uint ZeroPageCrc(int pageSize)
    {
        ReadOnlySpan<byte> zeros = new byte[pageSize];
        return PageCrc(zeros);
    }

    /// <summary>The memory digest of guest memory: the CRC-32C of each page's CRC-32C, region by region in guest-physical order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a first round ends before tiering would promote it
    public static uint MemoryDigest(GuestMemoryMap memory, int pageSize)
    {
        uint digest = ~0u;
        GuestMemoryMap.Snapshot regions = memory.Enter(); // a region unplugged meanwhile waits until this is done
        try
        {
            foreach (HostMemoryRegion region in regions.Regions)
            {
                for (ulong offset = 0; offset < region.Length; offset += (ulong)pageSize)
                {
                    digest = BitOperations.Crc32C(digest, PageCrc(GuestMemoryMap.Span(region, region.GuestAddress + offset, pageSize)));
                }
            }
        }
        finally
        {
            GuestMemoryMap.Exit(regions);
        }

        return digest;
    }

    /// <summary>Continues a memory digest with a table of page CRCs (one region's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a first round ends before tiering would promote it
    public static uint MemoryDigest(uint digest, ReadOnlySpan<uint> pageCrcs)
    {
        foreach (uint crc in pageCrcs)
        {
            digest = BitOperations.Crc32C(digest, crc);
        }

        return digest;
    }

    public static void WriteHeader(Span<byte> span, uint pageSize, ulong memoryBytes, int dataConnections = 0, uint flags = 0)
    {
        span[..HeaderBytes].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(span, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], dataConnections == 0 ? Version : VersionWithDataConnections);
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], (ushort)dataConnections);
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], pageSize);
        BinaryPrimitives.WriteUInt32LittleEndian(span[12..], flags);
        BinaryPrimitives.WriteUInt64LittleEndian(span[16..], memoryBytes);
    }

    /// <summary>A data connection's first 24 bytes: which connection of how many, of which stream (the token the destination granted).</summary>
    public static void WriteDataConnectionHeader(Span<byte> span, int index, int connections, uint pageSize, ulong token)
    {
        span[..HeaderBytes].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(span, DataConnectionMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], VersionWithDataConnections);
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], (ushort)index);
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], pageSize);
        BinaryPrimitives.WriteUInt32LittleEndian(span[12..], (uint)connections);
        BinaryPrimitives.WriteUInt64LittleEndian(span[16..], token);
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

    /// <summary>A whole page's CRC-32C from the initial state, as the format defines it (the raw register, not inverted).</summary>
    public static uint PageCrc(ReadOnlySpan<byte> page) => Crc32C.Append(~0u, page);

    /// <summary>The CRC-32C register <paramref name="crc"/> run over <paramref name="data"/>.</summary>
    public static uint Crc(uint crc, ReadOnlySpan<byte> data) => Crc32C.Append(crc, data);

    /// <summary>The CRC of a record header with its CRC field taken as zero.</summary>
    public static uint HeaderCrc(ReadOnlySpan<byte> record)
    {
        Span<byte> copy = stackalloc byte[RecordBytes];
        record[..RecordBytes].CopyTo(copy);
        WriteCrc(copy, 0);
        return Crc(~0u, copy);
    }
}
