// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
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
///
/// recovery, after a cut: the source opens a new control connection, then the push connections, each beginning with
/// resume (source to destination): "DLRS" | role u16 (0 control, 1 push) | index u16 | attempt u32 | token u64 | push connections u32 | reserved u32
///          token: the one the destination gave in the header's acceptance; attempt: above every earlier one
/// missing (destination to source, on the new control connection): "DLMS" | reserved u32 | runs u64 | CRC-32C of the runs u32 | reserved u32,
///          then each run: first page u64 | pages u64 (sorted, apart, inside the memory): every page not valid there
/// then requests (those in flight at the cut first, again) and answers on it, the push on the others, as before
/// </code>
/// </summary>
internal static class PostCopyFormat
{
    public const uint RequestMagic = 0x5152_4C44; // "DLRQ"
    public const int RequestBytes = 24;
    public const ulong Done = ulong.MaxValue;
    public const uint ResumeMagic = 0x5352_4C44;  // "DLRS"
    public const uint MissingMagic = 0x534D_4C44; // "DLMS"
    public const int ResumeBytes = 32;
    public const int MissingHeaderBytes = 24;
    public const int RunBytes = 16;
    private const int RunsPerChunk = 4096; // 64 KiB of runs at a time
    public const ushort ControlRole = 0;
    public const ushort PushRole = 1;

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

    /// <summary>The first bytes of a recovered connection: which one it is, of which attempt, for which session.</summary>
    public static void WriteResume(Span<byte> span, ushort role, int index, uint attempt, ulong token, int pushConnections)
    {
        span[..ResumeBytes].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(span, ResumeMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], role);
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], (ushort)index);
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], attempt);
        BinaryPrimitives.WriteUInt64LittleEndian(span[12..], token);
        BinaryPrimitives.WriteUInt32LittleEndian(span[20..], (uint)pushConnections);
    }

    /// <summary>A recovered connection's first bytes, read; its reserved bytes zero and its magic right, or a message that says what it is not.</summary>
    public static async ValueTask<(PostCopyResume? Resume, string? Refusal)> ReadResumeAsync(PipeReader input, CancellationToken cancellationToken)
    {
        ReadResult result = await input.ReadAtLeastAsync(ResumeBytes, cancellationToken).ConfigureAwait(false);
        if (result.Buffer.Length < ResumeBytes)
        {
            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            return (null, $"a connection closed after {result.Buffer.Length} bytes of its resume");
        }

        Span<byte> h = stackalloc byte[ResumeBytes];
        result.Buffer.Slice(0, ResumeBytes).CopyTo(h);
        input.AdvanceTo(result.Buffer.GetPosition(ResumeBytes));
        ushort role = BinaryPrimitives.ReadUInt16LittleEndian(h[4..]);
        if (BinaryPrimitives.ReadUInt32LittleEndian(h) != ResumeMagic || BinaryPrimitives.ReadUInt32LittleEndian(h[24..]) != 0 || BinaryPrimitives.ReadUInt32LittleEndian(h[28..]) != 0)
        {
            return (null, "a connection that is not a post-copy resume (its magic is not \"DLRS\", or its reserved bytes are not zero)");
        }

        if (role is not (ControlRole or PushRole))
        {
            return (null, $"a post-copy resume of role {role}");
        }

        return (new PostCopyResume(role == ControlRole, BinaryPrimitives.ReadUInt16LittleEndian(h[6..]), BinaryPrimitives.ReadUInt32LittleEndian(h[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(h[12..]), BinaryPrimitives.ReadUInt32LittleEndian(h[20..])), null);
    }

    /// <summary>The destination's missing pages, as runs, with their CRC; written a chunk at a time (a list can run to millions of runs).</summary>
    public static void WriteMissing(PipeWriter output, ReadOnlySpan<DirtyRun> runs)
    {
        uint crc = ~0u;
        Span<byte> run = stackalloc byte[RunBytes];
        foreach (DirtyRun r in runs)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(run, r.FirstPage);
            BinaryPrimitives.WriteUInt64LittleEndian(run[8..], r.PageCount);
            crc = Crc(crc, run);
        }

        Span<byte> header = output.GetSpan(MissingHeaderBytes)[..MissingHeaderBytes];
        header.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(header, MissingMagic);
        BinaryPrimitives.WriteUInt64LittleEndian(header[8..], (ulong)runs.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[16..], crc);
        output.Advance(MissingHeaderBytes);
        for (int first = 0; first < runs.Length; first += RunsPerChunk)
        {
            ReadOnlySpan<DirtyRun> chunk = runs.Slice(first, Math.Min(RunsPerChunk, runs.Length - first));
            Span<byte> body = output.GetSpan(chunk.Length * RunBytes);
            for (int i = 0; i < chunk.Length; i++)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(body[(i * RunBytes)..], chunk[i].FirstPage);
                BinaryPrimitives.WriteUInt64LittleEndian(body[(i * RunBytes + 8)..], chunk[i].PageCount);
            }

            output.Advance(chunk.Length * RunBytes);
        }
    }

    /// <summary>
    /// The destination's missing pages, read and checked: sorted, apart, inside <paramref name="pages"/>, their CRC
    /// right. Read a chunk at a time: a peer's count buys it no buffer larger than the bytes it sent.
    /// </summary>
    /// <exception cref="PageStreamException">Not a missing list, damaged, cut, or a run out of place.</exception>
    public static async ValueTask<DirtyRun[]> ReadMissingAsync(PipeReader input, ulong pages, CancellationToken cancellationToken)
    {
        ReadResult result = await input.ReadAtLeastAsync(MissingHeaderBytes, cancellationToken).ConfigureAwait(false);
        if (result.Buffer.Length < MissingHeaderBytes)
        {
            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            throw new PageStreamException($"the destination's missing pages cut after {result.Buffer.Length} bytes", 0);
        }

        byte[] header = result.Buffer.Slice(0, MissingHeaderBytes).ToArray();
        input.AdvanceTo(result.Buffer.GetPosition(MissingHeaderBytes));
        ulong count = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(8));
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != MissingMagic || BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)) != 0 || BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(20)) != 0)
        {
            throw new PageStreamException("not the destination's missing pages", 0);
        }

        if (count > (pages + 1) / 2) // runs apart: never more than every other page
        {
            throw new PageStreamException($"{count:N0} runs of missing pages in a memory of {pages:N0} pages", 0);
        }

        var runs = new List<DirtyRun>((int)Math.Min(count, RunsPerChunk));
        byte[] chunk = new byte[RunsPerChunk * RunBytes];
        uint crc = ~0u;
        while ((ulong)runs.Count < count)
        {
            int take = (int)Math.Min(count - (ulong)runs.Count, RunsPerChunk);
            int bytes = take * RunBytes;
            result = await input.ReadAtLeastAsync(bytes, cancellationToken).ConfigureAwait(false);
            if (result.Buffer.Length < bytes)
            {
                input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                throw new PageStreamException($"the destination's missing pages cut after {MissingHeaderBytes + (long)runs.Count * RunBytes + result.Buffer.Length:N0} of {MissingHeaderBytes + (long)count * RunBytes:N0} bytes", 0);
            }

            Span<byte> body = chunk.AsSpan(0, bytes);
            result.Buffer.Slice(0, bytes).CopyTo(body);
            input.AdvanceTo(result.Buffer.GetPosition(bytes));
            crc = Crc(crc, body);
            for (int i = 0; i < take; i++)
            {
                runs.Add(new DirtyRun(BinaryPrimitives.ReadUInt64LittleEndian(body[(i * RunBytes)..]), BinaryPrimitives.ReadUInt64LittleEndian(body[(i * RunBytes + 8)..])));
            }
        }

        if (crc != BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(16)))
        {
            throw new PageStreamException("the destination's missing pages: their checksum does not match", 0);
        }

        ulong end = 0;
        for (int i = 0; i < runs.Count; i++)
        {
            (ulong first, ulong length) = (runs[i].FirstPage, runs[i].PageCount);
            string? wrong =
                length == 0 ? "is empty"
                : i > 0 && first < end ? "is out of order or overlaps the one before"
                : i > 0 && first == end ? "touches the one before (runs are apart)"
                : first >= pages || length > pages - first ? $"leaves the {pages:N0} pages of memory"
                : null;
            if (wrong is not null)
            {
                throw new PageStreamException($"missing run {i} ({first:N0}+{length:N0}) {wrong}", 0);
            }

            end = first + length;
        }

        return [.. runs];
    }
}
