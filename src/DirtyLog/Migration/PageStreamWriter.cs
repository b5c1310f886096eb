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
using DirtyLog.Tracking;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Migration;

/// <summary>
/// Writes a round's dirty page runs and the guest memory behind them to a <see cref="PipeWriter"/> as framed,
/// checksummed records (see the format in the remarks); pages that are all zero go as a count without data.
/// </summary>
/// <remarks>
/// <para>Format, version 3, little-endian: a 24-byte header (<c>"DLPS"</c>, version, page size, memory size), then
/// 24-byte records: the regions of guest memory (added, removed), data (pages follow), zero pages, round end, state
/// (named bytes a VMM sends along: vCPU registers, device state), end of stream, and after the end an optional memory
/// digest. Each record carries a
/// CRC-32C of its header and bytes; the end record carries the CRC-32C of every record's CRC in order, and the
/// totals. The stream does not own the connection: after the end record it is the VMM's again.</para>
/// <para>Pages are copied once, from guest memory straight into the pipe's buffer, and checksummed there: the guest
/// may keep writing during pre-copy, and what is sent is exactly what was checksummed. A data record holds at most
/// 1 MiB of pages (or one page, for pages above 1 MiB), so no buffer grows with the run.</para>
/// <para>Not thread-safe: one sender writes one stream.</para>
/// </remarks>
public sealed partial class PageStreamWriter
{
    /// <summary>
    /// The smallest buffer segment a <see cref="PipeWriter"/> under this writer should have (2 MiB; for
    /// <c>PipeWriter.Create</c>, <c>new StreamPipeWriterOptions(minimumBufferSize: PageStreamWriter.RecommendedBufferSize)</c>).
    /// A data record is written in one span of up to 1 MiB; with the default 4 KiB segments, a round of one-page records
    /// rents more segments per flush than the shared pool keeps, and the pipe allocates about 1.5 bytes per byte sent.
    /// </summary>
    public const int RecommendedBufferSize = 2 << 20;

    private readonly PipeWriter _output;
    private readonly GuestMemoryMap _memory;
    private readonly int _pageSize;
    private uint _chain = ~0u;
    private readonly HashSet<string> _stateNames = new(StringComparer.Ordinal);
    private List<HostMemoryRegion> _announced = []; // the regions the reader knows of, by guest address
    private List<AddressRange> _unplugged = [];     // guest ranges of regions removed during the stream: their pages are skipped
    private readonly IReadOnlyList<HostMemoryRegion> _initial; // the regions when the writer was made: one removed before the header is unplugged too
    private bool _headerWritten;

    /// <summary>
    /// Whether pages of runs that lie in no region (live or unplugged) are skipped rather than refused: a migration
    /// session's, whose trackers may log a write to a slot declared before its region was added to the map (the
    /// region is then sent whole).
    /// </summary>
    internal bool SkipPagesOutsideRegions { get; init; }
    private bool _ended;
    private bool _digestSent;
    private ulong _dataPages;
    private ulong _zeroPages;
    private long _bytesWritten;

    /// <summary>Creates a writer of the memory's pages.</summary>
    /// <param name="output">The pipe to write to.</param>
    /// <param name="memory">The source guest memory.</param>
    /// <param name="pageSize">Bytes per page: a power of two from 4 KiB to 2 MiB that divides the memory size; 4096 by default.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="pageSize"/> breaks that rule.</exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0026", Justification = "The overloads differ in the type of a required parameter (a view or a map, unrelated types): no call is ambiguous.")]
    public PageStreamWriter(PipeWriter output, GuestMemoryView memory, int pageSize = 4096)
        : this(output, new GuestMemoryMap(memory ?? throw new ArgumentNullException(nameof(memory))), pageSize)
    {
    }

    /// <summary>
    /// Creates a writer of the pages of guest memory laid out as regions. Regions added to the map are announced to
    /// the reader before the next round, state or end; regions removed are announced as removed, and their pages in
    /// runs are skipped (they are no longer guest memory).
    /// </summary>
    /// <param name="output">The pipe to write to.</param>
    /// <param name="memory">The source guest memory.</param>
    /// <param name="pageSize">Bytes per page: a power of two from 4 KiB to 2 MiB that divides every region's address and size; 4096 by default.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="pageSize"/> breaks that rule.</exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0026", Justification = "The overloads differ in the type of a required parameter (a view or a map, unrelated types): no call is ambiguous.")]
    public PageStreamWriter(PipeWriter output, GuestMemoryMap memory, int pageSize = 4096)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(memory);
        CheckPageSize(pageSize, nameof(pageSize));
        foreach (HostMemoryRegion region in memory.Regions)
        {
            if (((region.GuestAddress | region.Length) & (ulong)(pageSize - 1)) != 0)
            {
                throw new ArgumentOutOfRangeException(nameof(pageSize), pageSize, $"The page size must divide the memory size and every region's address ({region.Length:N0} bytes at 0x{region.GuestAddress:x}).");
            }
        }

        _output = output;
        _memory = memory;
        _initial = memory.Regions;
        _pageSize = pageSize;
    }

    /// <summary>Pages sent with their data (on the data connections too, when there are some).</summary>
    public ulong DataPages => _dataPages + SumOfDataConnections(w => w._dataPages);

    /// <summary>Pages sent as zero pages (no data).</summary>
    public ulong ZeroPages => _zeroPages + SumOfDataConnections(w => w._zeroPages);

    /// <summary>Bytes written to the pipe (and to the data connections' pipes, when there are some).</summary>
    public long BytesWritten => _bytesWritten + (long)SumOfDataConnections(w => (ulong)w._bytesWritten);

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
        RegionPlan plan = PlanRegions();
        foreach (DirtyRun run in runs.Span)
        {
            for (ulong page = run.FirstPage; page < run.EndPage;)
            {
                page = plan.SkipFrom(page, run.EndPage, _pageSize)
                    ?? (SkipPagesOutsideRegions ? plan.NextLive(page, run.EndPage, _pageSize) : throw new ArgumentOutOfRangeException(nameof(runs), run, $"Page {page:N0} of the run is in no region of guest memory."));
            }
        }

        bool chunked = round is not null || source is not null;
        long before = BytesWritten;
        WriteRegionChanges(plan);
        if (_dataConnections is { } connections)
        {
            if (source is not null)
            {
                throw new InvalidOperationException("A chunk source's pages go over one connection.");
            }

            await WriteRoundOnDataConnectionsAsync(connections, runs, plan, chunked, round, cancellationToken).ConfigureAwait(false);
            return BytesWritten - before;
        }

        for (int i = 0; i < runs.Length; i++)
        {
            DirtyRun run = runs.Span[i];
            for (ulong page = run.FirstPage; page < run.EndPage;)
            {
                int live = IndexOf(_announced, page * (ulong)_pageSize);
                if (live < 0)
                {
                    // An unplugged region (no longer guest memory), or with SkipPagesOutsideRegions none at all.
                    page = plan.SkipFrom(page, run.EndPage, _pageSize) ?? plan.NextLive(page, run.EndPage, _pageSize);
                    continue;
                }

                HostMemoryRegion region = _announced[live];
                ulong segmentEnd = Math.Min(run.EndPage, (region.GuestAddress + region.Length) / (ulong)_pageSize);
                await WriteSegmentAsync(region, page, segmentEnd, chunked, round, source, cancellationToken).ConfigureAwait(false);
                page = segmentEnd;
            }
        }

        Rounds++;
        WriteControl(RoundEnd, (ulong)Rounds);
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        return BytesWritten - before;
    }

    /// <summary>The records of pages [<paramref name="first"/>, <paramref name="end"/>), all inside <paramref name="region"/>.</summary>
    private async ValueTask WriteSegmentAsync(HostMemoryRegion region, ulong first, ulong end, bool chunked, HarvestRound? round, IPageChunkSource? source, CancellationToken cancellationToken)
    {
        ulong chunkStart = first;
        ulong chunkEnd = first;
        PageChunk chunk = default;
        for (ulong page = first; page < end;)
        {
            if (chunked && page >= chunkEnd)
            {
                // The next chunk: re-protected (deferred clear) or made ready by the source before its memory is read.
                chunkStart = page;
                chunkEnd = Math.Min(end, page + (ulong)MaxDataPages(_pageSize));
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

            ulong limit = chunked ? chunkEnd : end;
            if (source is not null)
            {
                var reader = new PageSource(chunk.Memory is not null, chunk.Memory?.Address ?? 0, chunk.Bytes.Span, chunkStart, _pageSize);
                page += WriteRecordAt(reader, page, limit);
                if (page == chunkEnd)
                {
                    source.ChunkWritten(chunkStart, chunkEnd - chunkStart);
                }
            }
            else
            {
                // The region is held for the record: an unplug waits, and a region unplugged already is skipped.
                GuestMemoryMap.Snapshot regions = _memory.Enter();
                try
                {
                    int index = regions.IndexOf(page * (ulong)_pageSize);
                    if (index < 0 || regions.Regions[index] != region)
                    {
                        return; // unplugged under the round: the next round, state or end says so to the reader
                    }

                    page += WriteRecordAt(new PageSource(true, unchecked(region.HostAddress - (nint)region.GuestAddress), default, 0, _pageSize), page, limit);
                }
                finally
                {
                    GuestMemoryMap.Exit(regions);
                }
            }

            if (_output.UnflushedBytes >= 1 << 20)
            {
                await FlushAsync(cancellationToken).ConfigureAwait(false);
            }
        }
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

        WriteRegionChanges(PlanRegions());
        int total = RecordBytes + nameBytes.Length + state.Length;
        Span<byte> span = _output.GetSpan(total);
        WriteRecord(span, State, (uint)state.Length, (ulong)nameBytes.Length);
        nameBytes.CopyTo(span[RecordBytes..]);
        state.Span.CopyTo(span[(RecordBytes + nameBytes.Length)..]);
        uint crc = Crc(HeaderCrc(span), span[RecordBytes..total]);
        WriteCrc(span, crc);
        _chain = System.Numerics.BitOperations.Crc32C(_chain, crc);
        _output.Advance(total);
        _bytesWritten += total;
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
        if (_dataConnections is { } connections)
        {
            await EndDataConnectionsAsync(connections, cancellationToken).ConfigureAwait(false);
        }

        WriteRegionChanges(PlanRegions());
        await WriteStreamEndAsync(End, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The record that ends the stream (the end, or a post-copy record in its place): the totals and the chain of every record before it.</summary>
    private async ValueTask WriteStreamEndAsync(byte kind, CancellationToken cancellationToken)
    {
        Span<byte> span = _output.GetSpan(RecordBytes);
        WriteRecord(span, kind, 0, DataPages + ZeroPages);
        WriteCrc(span, _chain);
        _output.Advance(RecordBytes);
        _bytesWritten += RecordBytes;
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

        uint digest = MemoryDigest(_memory, _pageSize);
        Span<byte> span = _output.GetSpan(RecordBytes);
        WriteRecord(span, Digest, 0, digest);
        WriteCrc(span, HeaderCrc(span));
        _output.Advance(RecordBytes);
        _bytesWritten += RecordBytes;
        _digestSent = true;
        await FlushAsync(cancellationToken).ConfigureAwait(false);
        return digest;
    }

    /// <summary>
    /// Writes and flushes the stream header and the regions of guest memory alone (a migration session's handshake,
    /// before any page).
    /// </summary>
    internal async ValueTask WriteHeaderAsync(CancellationToken cancellationToken)
    {
        WriteRegionChanges(PlanRegions());
        await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The header, if it is not written yet, then a record for each region removed and each added since the last.</summary>
    private void WriteRegionChanges(RegionPlan plan)
    {
        if (!_headerWritten)
        {
            ulong bytes = 0;
            foreach (HostMemoryRegion region in plan.Added)
            {
                bytes += region.Length;
            }

            Span<byte> span = _output.GetSpan(HeaderBytes);
            WriteHeader(span, (uint)_pageSize, bytes, RequestedDataConnections, OfferPostCopy && RequestedDataConnections > 0 ? PostCopyOffered : 0);
            _output.Advance(HeaderBytes);
            _bytesWritten += HeaderBytes;
            _headerWritten = true;
        }

        foreach (HostMemoryRegion region in plan.Removed)
        {
            WriteControl(RegionRemoved, region.GuestAddress / (ulong)_pageSize, (uint)(region.Length / (ulong)_pageSize));
        }

        foreach (HostMemoryRegion region in plan.Added)
        {
            WriteControl(RegionAdded, region.GuestAddress / (ulong)_pageSize, (uint)(region.Length / (ulong)_pageSize));
        }

        _announced = plan.Live;
        _unplugged = plan.Unplugged;
    }

    /// <summary>What the map changed since the regions were last announced, checked against the stream's rules; nothing is written.</summary>
    /// <exception cref="InvalidOperationException">A region added is not a whole number of pages, or has more than 2^32 of them.</exception>
    private RegionPlan PlanRegions()
    {
        IReadOnlyList<HostMemoryRegion> now = _memory.Regions;
        List<HostMemoryRegion> removed = _announced.FindAll(r => !Contains(now, r));
        var added = new List<HostMemoryRegion>();
        foreach (HostMemoryRegion region in now)
        {
            if (Contains(_announced, region))
            {
                continue;
            }

            if (((region.GuestAddress | region.Length) & (ulong)(_pageSize - 1)) != 0 || region.Length / (ulong)_pageSize > uint.MaxValue)
            {
                throw new InvalidOperationException($"The region of {region.Length:N0} bytes at 0x{region.GuestAddress:x} is not a whole number of {_pageSize}-byte pages at a page boundary, or has more than 2^32 of them.");
            }

            added.Add(region);
        }

        if (!_headerWritten && now.Count == 0)
        {
            throw new InvalidOperationException("Guest memory has no region to send.");
        }

        var unplugged = new List<AddressRange>(_unplugged);
        unplugged.AddRange(removed.ConvertAll(r => new AddressRange(r.GuestAddress, r.Length)));
        if (!_headerWritten)
        {
            // Removed before it could be announced: no record says so, but runs over it are skipped as for any other.
            foreach (HostMemoryRegion region in _initial)
            {
                if (!Contains(now, region))
                {
                    unplugged.Add(new AddressRange(region.GuestAddress, region.Length));
                }
            }
        }
        return new RegionPlan([.. now], added, removed, unplugged);

        static bool Contains(IReadOnlyList<HostMemoryRegion> regions, HostMemoryRegion region)
        {
            foreach (HostMemoryRegion r in regions)
            {
                if (r == region)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>The index of the region of <paramref name="regions"/> (sorted, disjoint) that holds <paramref name="address"/>, or -1.</summary>
    private static int IndexOf(List<HostMemoryRegion> regions, ulong address) =>
        GuestMemoryMap.IndexOf(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(regions), address);

    /// <summary>The regions as they will be announced: those live, those added and removed now, and every range unplugged.</summary>
    private sealed record RegionPlan(List<HostMemoryRegion> Live, List<HostMemoryRegion> Added, List<HostMemoryRegion> Removed, List<AddressRange> Unplugged)
    {
        /// <summary>The first page at or after <paramref name="page"/> (in no region) that starts a live region, at most <paramref name="end"/>.</summary>
        public ulong NextLive(ulong page, ulong end, int pageSize)
        {
            ulong address = page * (ulong)pageSize;
            int next = Live.FindIndex(r => r.GuestAddress > address);
            return next < 0 ? end : Math.Max(page + 1, Math.Min(end, Live[next].GuestAddress / (ulong)pageSize));
        }

        /// <summary>
        /// Where the pages from <paramref name="page"/> stop being of one kind: the end of its live region (they are
        /// sent) or of its unplugged range (they are skipped), at most <paramref name="end"/>; <see langword="null"/>
        /// when the page is in neither.
        /// </summary>
        public ulong? SkipFrom(ulong page, ulong end, int pageSize)
        {
            ulong address = page * (ulong)pageSize;
            int live = IndexOf(Live, address);
            if (live >= 0)
            {
                return Math.Min(end, (Live[live].GuestAddress + Live[live].Length) / (ulong)pageSize);
            }

            foreach (AddressRange range in Unplugged)
            {
                if (address >= range.Start && address - range.Start < range.Length)
                {
                    ulong stop = (range.Start + range.Length) / (ulong)pageSize;
                    int next = Live.FindIndex(r => r.GuestAddress > address); // a region plugged where one was unplugged is live
                    return Math.Min(end, next >= 0 ? Math.Min(stop, Math.Max(page + 1, Live[next].GuestAddress / (ulong)pageSize)) : stop);
                }
            }

            return null;
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
            _zeroPages += count;
            return count;
        }

        int dataBytes = (int)count * _pageSize;
        Span<byte> span = _output.GetSpan(RecordBytes + dataBytes);
        WriteRecord(span, Data, count, page);
        Span<byte> data = span.Slice(RecordBytes, dataBytes);
        ReadOnlySpan<byte> pages = memory.Pages(page, dataBytes);
        uint crc = HeaderCrc(span);
        for (int offset = 0; offset < dataBytes; offset += _pageSize)
        {
            // Page by page, the CRC of the copy (the guest may be writing its page meanwhile), read while the copy is in
            // the cache; each page's own CRC, as the digest needs.
            Span<byte> copy = data.Slice(offset, _pageSize);
            pages.Slice(offset, _pageSize).CopyTo(copy);
            crc = System.Numerics.BitOperations.Crc32C(crc, PageCrc(copy));
        }

        WriteCrc(span, crc);
        _chain = System.Numerics.BitOperations.Crc32C(_chain, crc);
        _output.Advance(RecordBytes + dataBytes);
        _bytesWritten += RecordBytes + dataBytes;
        _dataPages += count;
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
        _bytesWritten += RecordBytes;
    }

    private bool IsZero(in PageSource memory, ulong page) => memory.Pages(page, _pageSize).IndexOfAnyExcept((byte)0) < 0;

    /// <summary>
    /// Where a record's pages are read: with <paramref name="inMemory"/>, memory laid out as the guest's from
    /// <paramref name="origin"/> (where guest address 0 would be, for the region the caller checked the pages are in);
    /// otherwise the bytes of the chunk a source handed over.
    /// </summary>
    private readonly unsafe ref struct PageSource(bool inMemory, nint origin, ReadOnlySpan<byte> chunk, ulong chunkFirstPage, int pageSize)
    {
        private readonly ReadOnlySpan<byte> _chunk = chunk;

        public ReadOnlySpan<byte> Pages(ulong page, int bytes) => inMemory
            ? new ReadOnlySpan<byte>((byte*)unchecked(origin + (nint)(page * (ulong)pageSize)), bytes)
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
