// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// A page stream written record by record, with valid checksums and chain, as a hostile or an older source could
/// send it: the reader's checks of meaning are what it tests, not its checksums.
/// </summary>
internal sealed class HandMadeStream
{
    private readonly List<byte> _bytes = [];
    private uint _chain = ~0u;

    public HandMadeStream(ulong memoryPages, ushort version = DirtyLog.Migration.PageStreamFormat.Version, int pageSize = 4096, ushort dataConnections = 0, uint flags = 0)
    {
        PageSize = pageSize;
        byte[] header = new byte[HeaderBytes];
        WriteHeader(header, (uint)pageSize, memoryPages * (ulong)pageSize);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(4), version);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(6), dataConnections);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), flags);
        _bytes.AddRange(header);
    }

    private HandMadeStream(byte[] header, int pageSize)
    {
        PageSize = pageSize;
        _bytes.AddRange(header);
    }

    /// <summary>A data connection's stream: its header (index, count, token) and then its own records and chain.</summary>
    public static HandMadeStream DataConnection(int index, int connections, ulong token, int pageSize = 4096)
    {
        byte[] header = new byte[HeaderBytes];
        WriteDataConnectionHeader(header, index, connections, (uint)pageSize, token);
        return new HandMadeStream(header, pageSize);
    }

    public HandMadeStream RoundBegin(ulong round) => Record(DirtyLog.Migration.PageStreamFormat.RoundBegin, round);

    public int PageSize { get; }

    public HandMadeStream Record(byte kind, ulong value, uint count = 0)
    {
        byte[] record = new byte[RecordBytes];
        WriteRecord(record, kind, count, value);
        uint crc = HeaderCrc(record);
        WriteCrc(record, crc);
        _chain = System.Numerics.BitOperations.Crc32C(_chain, crc);
        _bytes.AddRange(record);
        return this;
    }

    public HandMadeStream Added(ulong firstPage, uint pages) => Record(RegionAdded, firstPage, pages);

    public HandMadeStream Removed(ulong firstPage, uint pages) => Record(RegionRemoved, firstPage, pages);

    public HandMadeStream Zeros(ulong firstPage, uint pages) => Record(Zero, firstPage, pages);

    /// <summary>A data record of one page.</summary>
    public HandMadeStream Data(ulong page, byte[] bytes)
    {
        byte[] record = new byte[RecordBytes];
        WriteRecord(record, DirtyLog.Migration.PageStreamFormat.Data, 1, page);
        uint crc = System.Numerics.BitOperations.Crc32C(HeaderCrc(record), PageCrc(bytes));
        WriteCrc(record, crc);
        _chain = System.Numerics.BitOperations.Crc32C(_chain, crc);
        _bytes.AddRange(record);
        _bytes.AddRange(bytes);
        return this;
    }

    public HandMadeStream RoundEnd(ulong round) => Record(DirtyLog.Migration.PageStreamFormat.RoundEnd, round);

    /// <summary>The end record: the totals and the chain of every record before it.</summary>
    public HandMadeStream End(ulong pages)
    {
        byte[] record = new byte[RecordBytes];
        WriteRecord(record, DirtyLog.Migration.PageStreamFormat.End, 0, pages);
        WriteCrc(record, _chain);
        _bytes.AddRange(record);
        return this;
    }

    /// <summary>A post-copy discard record of these runs; <paramref name="pages"/> says how many pages they hold (their sum unless given).</summary>
    public HandMadeStream Discard((ulong First, ulong Pages)[] runs, ulong? pages = null)
    {
        byte[] record = new byte[RecordBytes + runs.Length * DiscardRunBytes];
        ulong sum = 0;
        for (int i = 0; i < runs.Length; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(record.AsSpan(RecordBytes + i * DiscardRunBytes), runs[i].First);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(record.AsSpan(RecordBytes + i * DiscardRunBytes + 8), runs[i].Pages);
            sum += runs[i].Pages;
        }

        WriteRecord(record, DirtyLog.Migration.PageStreamFormat.Discard, (uint)runs.Length, pages ?? sum);
        uint crc = Crc(HeaderCrc(record), record.AsSpan(RecordBytes));
        WriteCrc(record, crc);
        _chain = System.Numerics.BitOperations.Crc32C(_chain, crc);
        _bytes.AddRange(record);
        return this;
    }

    /// <summary>The post-copy record, in place of the end: the totals and the chain.</summary>
    public HandMadeStream PostCopy(ulong pages)
    {
        byte[] record = new byte[RecordBytes];
        WriteRecord(record, DirtyLog.Migration.PageStreamFormat.PostCopy, 0, pages);
        WriteCrc(record, _chain);
        _bytes.AddRange(record);
        return this;
    }

    public byte[] ToArray() => [.. _bytes];
}
