// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Migration.PostCopy;

/// <summary>
/// Post-copy's wire, little-endian, beside the page stream's records: the destination's page requests, and the
/// source's pages as the page stream's data and zero-page records (CRC-32C over header and each page's CRC), each
/// connection ending with an end record (its pages, and the chain of its records' CRCs).
/// <code>
/// request (destination to source): "DLRQ" | reserved u32 | page u64 | reserved u64
///          page 2^64-1: done, every page is valid here (the source ends its answers)
/// answers (source to destination, on the request connection): data or zero records of the pages asked, then the end
/// push (source to destination, a connection of its own): data or zero records of every other page not valid there, then the end
/// </code>
/// </summary>
internal static class PostCopyFormat
{
    public const uint RequestMagic = 0x5152_4C44; // "DLRQ"
    public const int RequestBytes = 24;
    public const ulong Done = ulong.MaxValue;

    public static void WriteRequest(Span<byte> span, ulong page)
    {
        span[..RequestBytes].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(span, RequestMagic);
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], page);
    }

    /// <summary>Reads one request: the page, <see cref="Done"/>, or <see langword="null"/> when the connection ended cleanly between requests.</summary>
    /// <exception cref="PageStreamException">Not a request, or cut in the middle of one.</exception>
    public static async ValueTask<ulong?> ReadRequestAsync(PipeReader input, CancellationToken cancellationToken)
    {
        ReadResult result = await input.ReadAtLeastAsync(RequestBytes, cancellationToken).ConfigureAwait(false);
        ReadOnlySequence<byte> buffer = result.Buffer;
        if (buffer.Length < RequestBytes)
        {
            input.AdvanceTo(buffer.Start, buffer.End);
            return buffer.IsEmpty ? null : throw new PageStreamException($"a post-copy request cut after {buffer.Length} bytes", 0);
        }

        Span<byte> request = stackalloc byte[RequestBytes];
        buffer.Slice(0, RequestBytes).CopyTo(request);
        input.AdvanceTo(buffer.GetPosition(RequestBytes));
        if (BinaryPrimitives.ReadUInt32LittleEndian(request) != RequestMagic || BinaryPrimitives.ReadUInt32LittleEndian(request[4..]) != 0 || BinaryPrimitives.ReadUInt64LittleEndian(request[16..]) != 0)
        {
            throw new PageStreamException("not a post-copy request", 0);
        }

        return BinaryPrimitives.ReadUInt64LittleEndian(request[8..]);
    }

    /// <summary>A data record of <paramref name="count"/> pages from <paramref name="page"/>, its bytes from <paramref name="memory"/>; or a zero-page record when they all read zero.</summary>
    /// <returns>The record's CRC, for the connection's chain.</returns>
    public static uint WritePages(PipeWriter output, ReadOnlySpan<byte> memory, ulong page, int count, int pageSize)
    {
        if (memory.IndexOfAnyExcept((byte)0) < 0)
        {
            Span<byte> zero = output.GetSpan(RecordBytes);
            WriteRecord(zero, Zero, (uint)count, page);
            uint zeroCrc = HeaderCrc(zero);
            WriteCrc(zero, zeroCrc);
            output.Advance(RecordBytes);
            return zeroCrc;
        }

        Span<byte> span = output.GetSpan(RecordBytes + memory.Length);
        WriteRecord(span, Data, (uint)count, page);
        Span<byte> data = span.Slice(RecordBytes, memory.Length);
        memory.CopyTo(data);
        uint crc = HeaderCrc(span);
        for (int offset = 0; offset < data.Length; offset += pageSize)
        {
            crc = System.Numerics.BitOperations.Crc32C(crc, PageCrc(data.Slice(offset, pageSize)));
        }

        WriteCrc(span, crc);
        output.Advance(RecordBytes + memory.Length);
        return crc;
    }

    /// <summary>The end of a post-copy connection: its pages and the chain of its records' CRCs.</summary>
    public static void WriteEnd(PipeWriter output, ulong pages, uint chain)
    {
        Span<byte> span = output.GetSpan(RecordBytes);
        WriteRecord(span, End, 0, pages);
        WriteCrc(span, chain);
        output.Advance(RecordBytes);
    }
}
