// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Memory;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Migration;

/// <summary>
/// Writes a round's dirty page runs and the guest memory behind them to a <see cref="PipeWriter"/> as framed,
/// checksummed records (see the format in the remarks); pages that are all zero go as a count without data.
/// </summary>
/// <remarks>
/// <para>Format, version 2, little-endian: a 24-byte header (<c>"DLPS"</c>, version, page size, memory size), then
/// 24-byte records: data (pages follow), zero pages, round end, state (named bytes a VMM sends along: vCPU
/// registers, device state), end of stream, and after the end an optional memory digest. Each record carries a
/// CRC-32C of its header and bytes; the end record carries the CRC-32C of every record's CRC in order, and the
/// totals. The stream does not own the connection: after the end record it is the VMM's again.</para>
/// <para>Pages are copied once, from guest memory straight into the pipe's buffer, and checksummed there: the guest
/// may keep writing during pre-copy, and what is sent is exactly what was checksummed. A data record holds at most
/// 1 MiB of pages (or one page, for pages above 1 MiB), so no buffer grows with the run.</para>
/// <para>Not thread-safe: one sender writes one stream.</para>
/// </remarks>
public sealed class PageStreamWriter
{
    /// <summary>
    /// The smallest buffer segment a <see cref="PipeWriter"/> under this writer should have (2 MiB; for
    /// <c>PipeWriter.Create</c>, <c>new StreamPipeWriterOptions(minimumBufferSize: PageStreamWriter.RecommendedBufferSize)</c>).
    /// A data record is written in one span of up to 1 MiB; with the default 4 KiB segments, a round of one-page records
    /// rents more segments per flush than the shared pool keeps, and the pipe allocates about 1.5 bytes per byte sent.
    /// </summary>
    public const int RecommendedBufferSize = 2 << 20;

    private readonly PipeWriter _output;
    private readonly GuestMemoryView _memory;
    private readonly int _pageSize;
    private uint _chain = ~0u;
    private readonly HashSet<string> _stateNames = new(StringComparer.Ordinal);
    private bool _headerWritten;
    private bool _ended;
    private bool _digestSent;

    /// <summary>Creates a writer of the memory's pages.</summary>
    /// <param name="output">The pipe to write to.</param>
    /// <param name="memory">The source guest memory.</param>
    /// <param name="pageSize">Bytes per page: a power of two from 4 KiB to 2 MiB that divides the memory size; 4096 by default.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="pageSize"/> breaks that rule.</exception>
    public PageStreamWriter(PipeWriter output, GuestMemoryView memory, int pageSize = 4096)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(memory);
        CheckPageSize(pageSize, nameof(pageSize));
        if (memory.Size % (ulong)pageSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(pageSize), pageSize, $"The page size must divide the memory size ({memory.Size:N0} bytes).");
        }

        _output = output;
        _memory = memory;
        _pageSize = pageSize;
    }

    /// <summary>Pages sent with their data.</summary>
    public ulong DataPages { get; private set; }

    /// <summary>Pages sent as zero pages (no data).</summary>
    public ulong ZeroPages { get; private set; }

    /// <summary>Bytes written to the pipe.</summary>
    public long BytesWritten { get; private set; }

    /// <summary>Rounds written.</summary>
    public long Rounds { get; private set; }

    /// <summary>Writes the runs' pages, then a round-end record, and flushes.</summary>
    /// <param name="runs">Dirty page runs, inside guest memory.</param>
    /// <param name="cancellationToken">Cancels the flush.</param>
    /// <returns>Bytes written for the round.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A run leaves guest memory (nothing of it is written).</exception>
    /// <exception cref="InvalidOperationException">The stream was ended.</exception>
    public ValueTask<long> WriteRoundAsync(IReadOnlyList<DirtyRun> runs, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(runs);
        return WriteRunsAsync(runs as DirtyRun[] ?? [.. runs], cancellationToken);
    }

    /// <summary>
    /// Writes a harvest round's pages, then a round-end record, and flushes. The runs are read in place from the
    /// round's own buffer, with no copy: settle the round (commit it once sent) only after the task completes.
    /// </summary>
    /// <param name="round">The round, not yet settled.</param>
    /// <param name="cancellationToken">Cancels the flush.</param>
    /// <returns>Bytes written for the round.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A run leaves guest memory (nothing of it is written).</exception>
    /// <exception cref="InvalidOperationException">The stream was ended, or the round was settled already.</exception>
    public ValueTask<long> WriteRoundAsync(HarvestRound round, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(round);
        if (round.IsCommitted || round.IsPutBack)
        {
            throw new InvalidOperationException($"Round {round.Number} was settled: its runs are gone.");
        }

        return WriteRunsAsync(round.RunMemory, cancellationToken, round.Deferred.Length != 0 ? round : null);
    }

    /// <summary>
    /// Writes the runs' pages as <paramref name="source"/> hands them over chunk by chunk (a snapshot's pages copied
    /// before the guest could write them), then a round-end record, and flushes.
    /// </summary>
    internal ValueTask<long> WriteRoundAsync(ReadOnlyMemory<DirtyRun> runs, IPageChunkSource source, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        return WriteRunsAsync(runs, cancellationToken, round: null, source);
    }

    /// <summary>The runs' records and the round end; with <paramref name="round"/>, each chunk is re-protected in the
    /// round's trackers before its memory is read (see <see cref="HarvestRound.ClearBeforeSend"/>); with
    /// <paramref name="source"/>, each chunk is read where the source hands it over, and handed back once written.</summary>
    private async ValueTask<long> WriteRunsAsync(ReadOnlyMemory<DirtyRun> runs, CancellationToken cancellationToken, HarvestRound? round = null, IPageChunkSource? source = null)
    {
        ObjectDisposedException.ThrowIf(_ended, this);
        ulong pages = _memory.Size / (ulong)_pageSize;
        foreach (DirtyRun run in runs.Span)
        {
            if (run.FirstPage >= pages || run.PageCount > pages - run.FirstPage)
            {
                throw new ArgumentOutOfRangeException(nameof(runs), run, $"The run leaves the {pages:N0} pages of guest memory.");
            }
        }

        bool chunked = round is not null || source is not null;
        long before = BytesWritten;
        WriteHeaderOnce();
        for (int i = 0; i < runs.Length; i++)
        {
            DirtyRun run = runs.Span[i];
            ulong chunkStart = run.FirstPage;
            ulong chunkEnd = run.FirstPage;
            PageChunk chunk = default;
            for (ulong page = run.FirstPage; page < run.EndPage;)
            {
                if (chunked && page >= chunkEnd)
                {
                    // The next chunk: re-protected (deferred clear) or made ready by the source before its memory is read.
                    chunkStart = page;
                    chunkEnd = Math.Min(run.EndPage, page + (ulong)MaxDataPages(_pageSize));
                    round?.ClearBeforeSend(page, chunkEnd - page);
                    if (source is not null)
                    {
                        chunk = source.ReadChunk(page, chunkEnd - page);
                        if (chunk.Memory is { } memory ? memory.Size != _memory.Size : (ulong)chunk.Bytes.Length != (chunkEnd - page) * (ulong)_pageSize)
                        {
                            throw new InvalidOperationException($"The chunk source handed over a chunk that does not hold pages {page} to {chunkEnd - 1}.");
                        }
                    }
                }

                var reader = new PageSource(source is null ? _memory : chunk.Memory, chunk.Bytes.Span, chunkStart, _pageSize);
                page += WriteRecordAt(reader, page, chunked ? chunkEnd : run.EndPage);
                if (source is not null && page == chunkEnd)
                {
                    source.ChunkWritten(chunkStart, chunkEnd - chunkStart);
                }

                if (_output.UnflushedBytes >= 1 << 20)
                {
                    await FlushAsync(cancellationToken).ConfigureAwait(false);
                }
            }
        }

        Rounds++;
        WriteControl(RoundEnd, (ulong)Rounds);
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        return BytesWritten - before;
    }

    /// <summary>
    /// Writes a state record: bytes the VMM sends along with memory under a name of its choosing (vCPU registers,
    /// device state), checksummed and chained like pages. The reader hands them back by name.
    /// </summary>
    /// <param name="name">The name: 1 to 255 bytes of UTF-8, unique in the stream.</param>
    /// <param name="state">The bytes: at most 16 MiB.</param>
    /// <param name="cancellationToken">Cancels the flush.</param>
    /// <returns>A task that completes when flushed.</returns>
    /// <exception cref="ArgumentException">The name is empty, too long, or used already in this stream.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The state is larger than 16 MiB.</exception>
    /// <exception cref="InvalidOperationException">The stream was ended.</exception>
    public async ValueTask WriteStateAsync(string name, ReadOnlyMemory<byte> state, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ObjectDisposedException.ThrowIf(_ended, this);
        byte[] nameBytes = System.Text.Encoding.UTF8.GetBytes(name);
        if (nameBytes.Length > MaxStateNameBytes)
        {
            throw new ArgumentException($"The state name takes {nameBytes.Length} bytes of UTF-8; at most {MaxStateNameBytes} fit.", nameof(name));
        }

        ArgumentOutOfRangeException.ThrowIfGreaterThan(state.Length, MaxStateBytes, nameof(state));
        if (!_stateNames.Add(name))
        {
            throw new ArgumentException($"A state named \"{name}\" was written already.", nameof(name));
        }

        WriteHeaderOnce();
        int total = RecordBytes + nameBytes.Length + state.Length;
        Span<byte> span = _output.GetSpan(total);
        WriteRecord(span, State, (uint)state.Length, (ulong)nameBytes.Length);
        nameBytes.CopyTo(span[RecordBytes..]);
        state.Span.CopyTo(span[(RecordBytes + nameBytes.Length)..]);
        uint crc = Crc(HeaderCrc(span), span[RecordBytes..total]);
        WriteCrc(span, crc);
        _chain = System.Numerics.BitOperations.Crc32C(_chain, crc);
        _output.Advance(total);
        BytesWritten += total;
        await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Writes the end record (totals and the chained checksum) and flushes: the stream is complete, and the reader
    /// returns. The connection stays open for whatever the VMM sends next (and for <see cref="WriteMemoryDigestAsync"/>).
    /// </summary>
    /// <param name="cancellationToken">Cancels the flush.</param>
    /// <returns>A task that completes when flushed.</returns>
    /// <exception cref="InvalidOperationException">The stream was ended already.</exception>
    public async ValueTask WriteEndAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_ended, this);
        WriteHeaderOnce();
        Span<byte> span = _output.GetSpan(RecordBytes);
        WriteRecord(span, End, 0, DataPages + ZeroPages);
        WriteCrc(span, _chain);
        _output.Advance(RecordBytes);
        BytesWritten += RecordBytes;
        _ended = true;
        await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// After the end: the digest of the whole source memory (the CRC-32C of every page's CRC-32C), which the
    /// destination compares with the pages it applied (<see cref="PageStreamReader.VerifyMemoryDigestAsync"/>). Call
    /// it once the source is stopped for good, after the switch-over: it reads all memory, and the destination already
    /// runs, so it costs no downtime. A mismatch is a page the dirty tracking lost.
    /// </summary>
    /// <param name="cancellationToken">Cancels the flush.</param>
    /// <returns>The digest sent.</returns>
    /// <exception cref="InvalidOperationException">The stream has not ended, or the digest was sent already.</exception>
    public async ValueTask<uint> WriteMemoryDigestAsync(CancellationToken cancellationToken)
    {
        if (!_ended || _digestSent)
        {
            throw new InvalidOperationException(_ended ? "The memory digest was sent already." : "The memory digest follows the end record: call WriteEndAsync first.");
        }

        uint digest = MemoryDigest(_memory, _memory.Size, _pageSize);
        Span<byte> span = _output.GetSpan(RecordBytes);
        WriteRecord(span, Digest, 0, digest);
        WriteCrc(span, HeaderCrc(span));
        _output.Advance(RecordBytes);
        BytesWritten += RecordBytes;
        _digestSent = true;
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        return digest;
    }

    /// <summary>Writes and flushes the stream header alone (a migration session's handshake, before any page).</summary>
    internal async ValueTask WriteHeaderAsync(CancellationToken cancellationToken)
    {
        WriteHeaderOnce();
        await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private void WriteHeaderOnce()
    {
        if (!_headerWritten)
        {
            Span<byte> span = _output.GetSpan(HeaderBytes);
            WriteHeader(span, (uint)_pageSize, _memory.Size);
            _output.Advance(HeaderBytes);
            BytesWritten += HeaderBytes;
            _headerWritten = true;
        }
    }

    /// <summary>One record from <paramref name="page"/>: zero pages as a count, other pages with their data.</summary>
    /// <returns>Pages covered.</returns>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a first round ends before tiering would promote it
    private ulong WriteRecordAt(in PageSource memory, ulong page, ulong end)
    {
        bool zero = IsZero(memory, page);
        ulong limit = Math.Min(end, page + (ulong)(zero ? MaxZeroPages : MaxDataPages(_pageSize)));
        ulong last = page + 1;
        while (last < limit && IsZero(memory, last) == zero)
        {
            last++;
        }

        uint count = (uint)(last - page);
        if (zero)
        {
            WriteControl(Zero, page, count);
            ZeroPages += count;
            return count;
        }

        int dataBytes = (int)count * _pageSize;
        Span<byte> span = _output.GetSpan(RecordBytes + dataBytes);
        WriteRecord(span, Data, count, page);
        Span<byte> data = span.Slice(RecordBytes, dataBytes);
        memory.Pages(page, dataBytes).CopyTo(data);
        uint crc = HeaderCrc(span);
        for (int offset = 0; offset < dataBytes; offset += _pageSize)
        {
            crc = System.Numerics.BitOperations.Crc32C(crc, PageCrc(data.Slice(offset, _pageSize))); // each page's own CRC, as the digest needs
        }

        WriteCrc(span, crc);
        _chain = System.Numerics.BitOperations.Crc32C(_chain, crc);
        _output.Advance(RecordBytes + dataBytes);
        BytesWritten += RecordBytes + dataBytes;
        DataPages += count;
        return count;
    }

    private void WriteControl(byte kind, ulong value, uint count = 0)
    {
        Span<byte> span = _output.GetSpan(RecordBytes);
        WriteRecord(span, kind, count, value);
        uint crc = HeaderCrc(span);
        WriteCrc(span, crc);
        _chain = System.Numerics.BitOperations.Crc32C(_chain, crc);
        _output.Advance(RecordBytes);
        BytesWritten += RecordBytes;
    }

    private bool IsZero(in PageSource memory, ulong page) => memory.Pages(page, _pageSize).IndexOfAnyExcept((byte)0) < 0;

    /// <summary>Where a record's pages are read: memory laid out as the guest's, or the bytes of the chunk a source handed over.</summary>
    private readonly ref struct PageSource(GuestMemoryView? memory, ReadOnlySpan<byte> chunk, ulong chunkFirstPage, int pageSize)
    {
        private readonly ReadOnlySpan<byte> _chunk = chunk;

        public ReadOnlySpan<byte> Pages(ulong page, int bytes) => memory is not null
            ? memory.Slice(page * (ulong)pageSize, bytes)
            : _chunk.Slice(checked((int)((page - chunkFirstPage) * (ulong)pageSize)), bytes);
    }

    private async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        FlushResult result = await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (result.IsCanceled || result.IsCompleted)
        {
            throw new OperationCanceledException("The reading end of the page stream went away.");
        }
    }
}
