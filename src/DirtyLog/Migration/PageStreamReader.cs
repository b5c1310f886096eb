// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Memory;
using DirtyLog.Tracking;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Migration;

/// <summary>
/// Reads a page stream on the destination and applies its pages to guest memory, validating every record before it
/// touches memory.
/// </summary>
/// <remarks>
/// <para>Checked before anything is written: the header (magic, version, page size equal to the destination's, memory
/// no larger than the destination's), each record's kind, reserved fields, page count and bounds, and its CRC-32C
/// over header and pages; at the end, the totals and the chained CRC of every record. Anything wrong, a stream cut
/// short included, ends with a <see cref="PageStreamException"/> that says what and at which offset; nothing is ever
/// written outside guest memory. Pages of records before the bad one have been applied: a failed stream leaves the
/// destination incomplete, never corrupt beyond what the source had sent.</para>
/// <para>The reader returns at the end record and reads nothing after it: the connection is the VMM's again (for
/// <see cref="VerifyMemoryDigestAsync"/>, or its own protocol). With <see cref="Acknowledgements"/> set, it tells the
/// source after each round and at the end how far it has applied, so that the source's bandwidth and expected
/// downtime are end to end (<see cref="PageStreamAcknowledgements"/> reads them).</para>
/// <para>Zero pages are written only where the destination page is not zero already, and with
/// <see cref="MemoryStartsZeroed"/> not even read unless this reader wrote them before; the destination keeps each
/// applied page's CRC-32C (4 bytes per page) for the memory digest. Destination memory is expected to start zeroed
/// (fresh), or the first pass to cover every page, as a full copy does.</para>
/// <para>Not thread-safe: one receiver reads one stream.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The data connections' cancellation is disposed by CloseDataConnectionsAsync, which a migration session always calls; a reader without data connections makes none.")]
public sealed partial class PageStreamReader
{
    private readonly PipeReader _input;
    private readonly GuestMemoryMap _memory;
    private readonly int _pageSize;
    private readonly string _connection = ""; // "data connection N: " in a data connection's reader, to prefix its failures
    private readonly List<ReceivedRegion> _regions = []; // the source's regions now, by first page; a data connection's reader shares its control's
    private readonly List<(ulong FirstPage, ulong PageCount)> _released = []; // regions removed: their memory may hold what this reader wrote
    private long _offset;
    private uint _chain = ~0u;
    private ulong _dataPages;
    private ulong _zeroPages;
    private long _rounds;
    private ulong _announcedBytes; // bytes of the regions added so far (the header's memory bytes are announced first)
    private ReadOnlySequence<byte> _pending; // the last buffer read and not yet advanced past
    private bool _hasPending;
    private bool _memoryVerified;
    private bool _ended;
    private bool _endAcknowledged;
    private uint _zeroPageCrc;
    private readonly Dictionary<string, ReadOnlyMemory<byte>> _states = new(StringComparer.Ordinal);
    private readonly List<string> _stateNames = [];

    /// <summary>Creates a reader that applies pages to <paramref name="memory"/>.</summary>
    /// <param name="input">The pipe to read.</param>
    /// <param name="memory">The destination guest memory.</param>
    /// <param name="pageSize">Bytes per page the stream must use: a power of two from 4 KiB to 2 MiB, as for the writer; 4096 by default.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="pageSize"/> breaks that rule.</exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0026", Justification = "The overloads differ in the type of a required parameter (a view or a map, unrelated types): no call is ambiguous.")]
    public PageStreamReader(PipeReader input, GuestMemoryView memory, int pageSize = 4096)
        : this(input, new GuestMemoryMap(memory ?? throw new ArgumentNullException(nameof(memory))), pageSize)
    {
    }

    /// <summary>
    /// Creates a reader that applies pages to guest memory laid out as regions: each region the source announces
    /// must lie inside one region of <paramref name="memory"/> when its record arrives, or the stream fails there,
    /// before any page of it is written.
    /// </summary>
    /// <param name="input">The pipe to read.</param>
    /// <param name="memory">The destination guest memory.</param>
    /// <param name="pageSize">Bytes per page the stream must use: a power of two from 4 KiB to 2 MiB, as for the writer; 4096 by default.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="pageSize"/> breaks that rule.</exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0026", Justification = "The overloads differ in the type of a required parameter (a view or a map, unrelated types): no call is ambiguous.")]
    public PageStreamReader(PipeReader input, GuestMemoryMap memory, int pageSize = 4096)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(memory);
        CheckPageSize(pageSize, nameof(pageSize));
        _input = input;
        _memory = memory;
        _pageSize = pageSize;
    }

    /// <summary>
    /// Whether the destination's memory reads zero wherever this reader has not written it (a fresh anonymous mapping
    /// or memfd nothing else wrote, as a destination VMM maps its RAM): zero-page records then touch only pages this
    /// reader wrote before and never read or fault in the others. <see langword="false"/> by default: every zero page
    /// is read and cleared where it is not zero. A wrong <see langword="true"/> leaves stale bytes that nothing reports
    /// (the memory digest covers what the stream carried, as it was applied). Set before the stream is read.
    /// </summary>
    public bool MemoryStartsZeroed { get; init; }

    /// <summary>
    /// Whether <see cref="ReadToEndAsync"/> leaves the end's acknowledgement to <see cref="AcknowledgeEndAsync"/> (or to
    /// <see cref="VerifyMemoryDigestAsync"/>, which sends it first if it is still owed). A VMM that resumes the guest and
    /// then acknowledges tells the source the moment the guest runs here: the source's downtime then covers the
    /// resume, and its work after the switch-over (the memory digest) does not compete with the resume for a CPU.
    /// <see langword="false"/> by default: the end is acknowledged as soon as it is read. Set before the stream is read.
    /// </summary>
    public bool DeferEndAcknowledgement { get; init; }

    /// <summary>Called after each round-end record with the round number (progress display).</summary>
    public Action<long, PageStreamSummary>? RoundReceived { get; set; }

    /// <summary>
    /// Where to acknowledge progress to the source (the other direction of the connection), or <see langword="null"/>:
    /// after each round is applied and at the end, a 24-byte acknowledgement with the round and the bytes read.
    /// </summary>
    public PipeWriter? Acknowledgements { get; set; }

    /// <summary>
    /// Whether the reader tells the source, right after the header checked out, that it accepts the stream (a
    /// migration session's handshake: the source sends no page before it). Needs <see cref="Acknowledgements"/>.
    /// </summary>
    internal bool AcknowledgeHeader { get; init; }

    /// <summary>The names of the state records, in the order they arrived.</summary>
    internal IReadOnlyList<string> StateNames => _stateNames;

    /// <summary>The source's memory size, from the stream header (0 until the header was read).</summary>
    internal ulong SourceMemoryBytes { get; private set; }

    /// <summary>
    /// Called when the source announces a region, after its record checked out and before the reader looks for it in
    /// the destination's memory (a migration session's hook maps it there). An exception fails the stream.
    /// </summary>
    internal Func<AddressRange, CancellationToken, ValueTask>? RegionAdding { get; init; }

    /// <summary>Called when the source announces that a region was removed; the reader writes nothing there from then on.</summary>
    internal Func<AddressRange, CancellationToken, ValueTask>? RegionRemoved { get; init; }

    /// <summary>Reads and applies the whole stream, up to and including its end record.</summary>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <returns>What the stream carried.</returns>
    /// <exception cref="PageStreamException">The stream was truncated, corrupted or hostile.</exception>
    public async ValueTask<PageStreamSummary> ReadToEndAsync(CancellationToken cancellationToken)
    {
        if (_ended)
        {
            throw new InvalidOperationException("The stream was read to its end already.");
        }

        // A data connection that fails stops the control connection's reads too: its failure is the stream's.
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        _controlReads = failed;
        try
        {
            return await ReadRecordsAsync(failed.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && _gate?.Failure is { } failure)
        {
            throw DataConnectionFailed(failure);
        }
        finally
        {
            _controlReads = null;
        }
    }

    private async ValueTask<PageStreamSummary> ReadRecordsAsync(CancellationToken cancellationToken)
    {
        ReadOnlySequence<byte> header = await NeedAsync(HeaderBytes, "the stream header", cancellationToken).ConfigureAwait(false);
        ushort version = CheckHeader(header.Slice(0, HeaderBytes));
        Consume(HeaderBytes);
        if (version == VersionWithoutRegions)
        {
            await AddRegionAsync(0, SourceMemoryBytes / (ulong)_pageSize, cancellationToken).ConfigureAwait(false);
        }

        while (_announcedBytes < SourceMemoryBytes)
        {
            // The regions of the header's memory come first: the header is accepted only once they all fit here.
            ReadOnlySequence<byte> first = await NeedAsync(RecordBytes, "the regions of the source's memory", cancellationToken).ConfigureAwait(false);
            byte[] record = first.Slice(0, RecordBytes).ToArray();
            if (record[0] != PageStreamFormat.RegionAdded)
            {
                throw Fail($"record kind {record[0]} came before the regions of the header's {SourceMemoryBytes:N0} bytes of memory were announced");
            }

            CheckReserved(record);
            await ReadRegionAddedAsync(record, cancellationToken).ConfigureAwait(false);
        }

        if (_announcedBytes != SourceMemoryBytes)
        {
            throw Fail($"the regions announced first hold {_announcedBytes:N0} bytes; the header says {SourceMemoryBytes:N0}");
        }

        if (AcknowledgeHeader)
        {
            await AcceptHeaderAsync(cancellationToken).ConfigureAwait(false);
        }

        bool inRound = false; // with data connections: between a round's begin and its end, when only they carry records
        while (true)
        {
            ReadOnlySequence<byte> buffered = await NeedAsync(RecordBytes, "a record header or the end marker", cancellationToken).ConfigureAwait(false);
            byte[] record = buffered.Slice(0, RecordBytes).ToArray();
            byte kind = record[0];
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(4));
            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(8));
            uint crc = ReadCrc(record);
            CheckReserved(record);
            CheckOnControlConnection(kind, inRound);
            switch (kind)
            {
                case RoundBegin:
                    if (count != 0 || value != (ulong)_rounds + 1)
                    {
                        throw Fail($"round-begin record says round {value} with {count} pages; round {_rounds + 1} with 0 was expected");
                    }

                    CheckCrc(HeaderCrc(record), crc, "round-begin record");
                    Chain(crc);
                    Consume(RecordBytes);
                    inRound = true;
                    _gate!.Begin(_rounds + 1); // the data connections may apply this round's pages from here
                    break;
                case PageStreamFormat.RegionAdded:
                    await ReadRegionAddedAsync(record, cancellationToken).ConfigureAwait(false);
                    break;
                case PageStreamFormat.RegionRemoved:
                    await ReadRegionRemovedAsync(record, count, value, crc, cancellationToken).ConfigureAwait(false);
                    break;
                case Data:
                    await ApplyDataAsync(record, count, value, crc, cancellationToken).ConfigureAwait(false);
                    break;
                case Zero:
                    ReadZeroPages(record, count, value, crc);
                    break;
                case RoundEnd:
                    if (count != 0 || value != (ulong)_rounds + 1)
                    {
                        throw Fail($"round-end record says round {value} with {count} pages; round {_rounds + 1} with 0 was expected");
                    }

                    CheckCrc(HeaderCrc(record), crc, "round-end record");
                    Chain(crc);
                    if (_gate is { } gate)
                    {
                        // Applied means applied on every data connection: only then may the next round begin.
                        await WaitForDataConnectionsAsync(gate.WaitForRoundAsync(_rounds + 1, cancellationToken)).ConfigureAwait(false);
                        inRound = false;
                    }

                    _rounds++;
                    Consume(RecordBytes);
                    await AcknowledgeAsync((ulong)_rounds, cancellationToken).ConfigureAwait(false);
                    RoundReceived?.Invoke(_rounds, Summary());
                    break;
                case State:
                    await ReadStateAsync(record, count, value, crc, cancellationToken).ConfigureAwait(false);
                    break;
                case Discard:
                    await ReadDiscardAsync(record, count, value, crc, cancellationToken).ConfigureAwait(false);
                    break;
                case PageStreamFormat.PostCopy:
                    await ReadPostCopyAsync(count, value, crc, cancellationToken).ConfigureAwait(false);
                    return Summary();
                case End:
                    await ReadStreamEndAsync(count, value, crc, cancellationToken).ConfigureAwait(false);
                    // The page CRCs no longer change: their digest is folded when it is needed, outside the downtime.
                    if (!DeferEndAcknowledgement)
                    {
                        await AcknowledgeEndAsync(cancellationToken).ConfigureAwait(false);
                    }

                    return Summary();
                default:
                    throw Fail($"unknown record kind {kind}");
            }
        }
    }

    /// <summary>
    /// Acknowledges the end record to the source (with <see cref="DeferEndAcknowledgement"/>, once the guest runs
    /// here); nothing when it was acknowledged already or there is no <see cref="Acknowledgements"/> writer.
    /// </summary>
    /// <param name="cancellationToken">Cancels the flush.</param>
    /// <returns>A task that completes when the acknowledgement is flushed.</returns>
    /// <exception cref="InvalidOperationException">The stream was not read to its end yet.</exception>
    public async ValueTask AcknowledgeEndAsync(CancellationToken cancellationToken)
    {
        if (!_ended)
        {
            throw new InvalidOperationException("The end can be acknowledged only once it was read.");
        }

        if (!_endAcknowledged)
        {
            _endAcknowledged = true;
            await AcknowledgeAsync(EndAcknowledged, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// After <see cref="ReadToEndAsync"/>: reads the memory digest the source sends once it is stopped for good
    /// (<see cref="PageStreamWriter.WriteMemoryDigestAsync"/>), and compares it with the pages applied, as they were at
    /// the end record; the guest may be running here already. A mismatch means the source's memory held a page the
    /// stream never carried: a write the dirty tracking lost.
    /// </summary>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The summary, with <see cref="PageStreamSummary.MemoryVerified"/> set.</returns>
    /// <exception cref="InvalidOperationException">The stream was not read to its end yet.</exception>
    /// <exception cref="PageStreamException">The record is missing or damaged, or the memory differs.</exception>
    public async ValueTask<PageStreamSummary> VerifyMemoryDigestAsync(CancellationToken cancellationToken)
    {
        if (!_ended)
        {
            throw new InvalidOperationException("The memory digest follows the end record: read the stream to its end first.");
        }

        await AcknowledgeEndAsync(cancellationToken).ConfigureAwait(false); // the source sends the digest only after it

        ReadOnlySequence<byte> buffered = await NeedAsync(RecordBytes, "the memory digest record", cancellationToken).ConfigureAwait(false);
        byte[] record = buffered.Slice(0, RecordBytes).ToArray();
        ulong value = BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(8));
        if (record[0] != Digest || BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(4)) != 0 || value > uint.MaxValue
            || record[1] != 0 || record[2] != 0 || record[3] != 0 || BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(20)) != 0)
        {
            throw Fail($"a memory digest record was expected, not kind {record[0]} with value 0x{value:x}");
        }

        CheckCrc(HeaderCrc(record), ReadCrc(record), "memory digest record");
        Consume(RecordBytes);
        uint applied = ~0u;
        foreach (ReceivedRegion region in _regions)
        {
            applied = MemoryDigest(applied, region.Crcs);
        }

        if (applied != (uint)value)
        {
            throw Fail($"the destination's memory differs from the source's: digest 0x{applied:x8}, source 0x{value:x8}");
        }

        _memoryVerified = true;
        return Summary();
    }

    /// <summary>
    /// Tells the source that this destination refuses the migration, and why (at most 1 KiB of the reason's UTF-8 is
    /// sent); the source's <see cref="PageStreamAcknowledgements"/> fails every waiter with it. Best effort: a
    /// connection that is gone already is not an error here.
    /// </summary>
    /// <returns>Whether the refusal was flushed.</returns>
    internal async ValueTask<bool> RefuseAsync(string reason, CancellationToken cancellationToken)
    {
        if (Acknowledgements is not { } acks)
        {
            return false;
        }

        byte[] text = System.Text.Encoding.UTF8.GetBytes(reason);
        int length = Math.Min(text.Length, MaxRefusalBytes);
        while (length > 0 && length < text.Length && (text[length] & 0xC0) == 0x80)
        {
            length--; // cut at a character's start: the source checks the reason is UTF-8
        }

        Span<byte> ack = acks.GetSpan(AckBytes + length)[..(AckBytes + length)];
        ack.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(ack, AckMagic);
        BinaryPrimitives.WriteUInt64LittleEndian(ack[8..], Refused);
        BinaryPrimitives.WriteUInt64LittleEndian(ack[16..], (ulong)length);
        text.AsSpan(0, length).CopyTo(ack[AckBytes..]);
        acks.Advance(AckBytes + length);
        try
        {
            await acks.FlushAsync(cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (IsConnectionFailure(e) || e is InvalidOperationException)
        {
            return false; // the source is gone, or the pipe was completed: it learns nothing more from us
        }
    }

    private PageStreamSummary Summary() =>
        new(TotalDataPages, TotalZeroPages, _rounds, TotalBytesRead) { MemoryVerified = _memoryVerified, States = new Dictionary<string, ReadOnlyMemory<byte>>(_states, StringComparer.Ordinal) };

    private async ValueTask AcknowledgeAsync(ulong round, CancellationToken cancellationToken)
    {
        if (Acknowledgements is not { } acks)
        {
            return;
        }

        Span<byte> ack = acks.GetSpan(AckBytes)[..AckBytes];
        ack.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(ack, AckMagic);
        BinaryPrimitives.WriteUInt64LittleEndian(ack[8..], round);
        BinaryPrimitives.WriteUInt64LittleEndian(ack[16..], (ulong)TotalBytesRead);
        acks.Advance(AckBytes);
        try
        {
            await acks.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (IsConnectionFailure(e))
        {
            throw new PageStreamException($"the acknowledgement of round {round} could not be sent: {e.Message}", _offset, e);
        }
    }

    private async ValueTask ReadStateAsync(byte[] record, uint count, ulong nameBytes, uint crc, CancellationToken cancellationToken)
    {
        if (nameBytes is 0 or > MaxStateNameBytes || count > MaxStateBytes)
        {
            throw Fail($"a state record with a {nameBytes}-byte name and {count} bytes (1 to {MaxStateNameBytes} and at most {MaxStateBytes} allowed)");
        }

        int total = RecordBytes + (int)nameBytes + (int)count;
        ReadOnlySequence<byte> buffered = await NeedAsync(total, $"the {count} bytes of a state record", cancellationToken).ConfigureAwait(false);
        byte[] body = buffered.Slice(RecordBytes, total - RecordBytes).ToArray();
        CheckCrc(Crc(HeaderCrc(record), body), crc, "state record");
        string name;
        try
        {
            name = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(body, 0, (int)nameBytes);
        }
        catch (System.Text.DecoderFallbackException)
        {
            throw Fail("a state record's name is not UTF-8");
        }

        if (!_states.TryAdd(name, body.AsMemory((int)nameBytes)))
        {
            throw Fail($"a second state record named \"{name}\"");
        }

        _stateNames.Add(name);

        Chain(crc);
        Consume(total);
    }

    /// <returns>The stream's version.</returns>
    private ushort CheckHeader(ReadOnlySequence<byte> bytes)
    {
        Span<byte> h = stackalloc byte[HeaderBytes];
        bytes.CopyTo(h);
        if (h[0] == 0x16 && h[1] == 0x03)
        {
            throw Fail("a TLS handshake arrived where a plain page stream was expected: TLS at a plain endpoint");
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(h) != Magic)
        {
            throw Fail("not a page stream: the magic is not \"DLPS\"");
        }

        ushort version = BinaryPrimitives.ReadUInt16LittleEndian(h[4..]);
        if (version is not (PageStreamFormat.Version or VersionWithoutRegions or VersionWithDataConnections))
        {
            throw Fail($"stream version {version} is not supported (this reader reads versions {VersionWithoutRegions} to {VersionWithDataConnections})");
        }

        uint pageSize = BinaryPrimitives.ReadUInt32LittleEndian(h[8..]);
        if (pageSize != (uint)_pageSize)
        {
            throw Fail($"the stream's page size {pageSize} is not the destination's {_pageSize}");
        }

        ulong memory = BinaryPrimitives.ReadUInt64LittleEndian(h[16..]);
        ushort connections = BinaryPrimitives.ReadUInt16LittleEndian(h[6..]);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(h[12..]);
        if ((version != VersionWithDataConnections && (connections != 0 || flags != 0)) || (flags & ~PageStreamFormat.PostCopyOffered) != 0)
        {
            throw Fail("the stream header has non-zero reserved bytes");
        }

        PostCopyOffered = flags == PageStreamFormat.PostCopyOffered;

        if (version == VersionWithDataConnections && connections is 0 or > PageStreamFormat.MaxDataConnections)
        {
            throw Fail($"the stream asks for {connections} data connections (1 to {PageStreamFormat.MaxDataConnections})");
        }

        RequestedDataConnections = connections;

        // A destination that maps regions as they are announced has none yet; one that has its memory is checked now.
        if (memory == 0 || memory % (ulong)_pageSize != 0 || (RegionAdding is null && memory > _memory.Size))
        {
            throw Fail($"the source's {memory:N0} bytes of memory do not fit the destination's {_memory.Size:N0}");
        }

        SourceMemoryBytes = memory;
        _zeroPageCrc = ZeroPageCrc(_pageSize);
        return version;
    }

    private void CheckReserved(byte[] record)
    {
        if (record[1] != 0 || record[2] != 0 || record[3] != 0 || BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(20)) != 0)
        {
            throw Fail($"record kind {record[0]} has non-zero reserved bytes");
        }
    }

    private async ValueTask ReadRegionAddedAsync(byte[] record, CancellationToken cancellationToken)
    {
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(4));
        ulong firstPage = BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(8));
        uint crc = ReadCrc(record);
        CheckCrc(HeaderCrc(record), crc, "region record");
        Chain(crc);
        Consume(RecordBytes);
        await AddRegionAsync(firstPage, count, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Takes a region of the source's: checked, told to the hook, found in the destination's memory.</summary>
    private async ValueTask AddRegionAsync(ulong firstPage, ulong count, CancellationToken cancellationToken)
    {
        ulong pages = ulong.MaxValue / (ulong)_pageSize;
        if (count == 0 || firstPage >= pages || count > pages - firstPage)
        {
            throw Fail($"a region of {count:N0} pages from page {firstPage:N0}: empty, or past the 64-bit guest-physical space");
        }

        if (_regions.Count >= MaxRegions)
        {
            throw Fail($"a region more than the {MaxRegions:N0} allowed");
        }

        int at = _regions.FindIndex(r => r.FirstPage >= firstPage);
        ReceivedRegion? before = at < 0 ? (_regions.Count > 0 ? _regions[^1] : null) : (at > 0 ? _regions[at - 1] : null);
        ReceivedRegion? after = at < 0 ? null : _regions[at];
        if ((before is not null && before.FirstPage + before.PageCount > firstPage) || (after is not null && firstPage + count > after.FirstPage))
        {
            throw Fail($"a region of pages {firstPage:N0}+{count:N0} overlaps one announced before");
        }

        var range = new AddressRange(firstPage * (ulong)_pageSize, count * (ulong)_pageSize);
        if (RegionAdding is { } adding)
        {
            try
            {
                await adding(range, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new PageStreamException($"the destination could not map the source's {range.Length:N0} bytes of memory at 0x{range.Start:x}: {e.Message}", _offset, e);
            }
        }

        if (!_memory.TryGetRegion(range.Start, range.Length, out HostMemoryRegion target))
        {
            throw Fail($"the source's {range.Length:N0} bytes of memory at 0x{range.Start:x} are not inside one region of the destination's memory ({_memory.Size:N0} bytes in {_memory.Regions.Count} regions)");
        }

        // Memory for the page CRCs is taken only now: the destination's own memory bounds it (4 bytes a page).
        var region = new ReceivedRegion(firstPage, count, target, MemoryStartsZeroed);
        region.Crcs.AsSpan().Fill(_zeroPageCrc); // fresh destination memory reads zero
        if (MemoryStartsZeroed && _released.Exists(r => firstPage < r.FirstPage + r.PageCount && r.FirstPage < firstPage + count))
        {
            // Plugged in again where this reader wrote before: that memory is not fresh, so every zero page is checked.
            region.Written.AsSpan().Fill(ulong.MaxValue);
        }
        _regions.Insert(at < 0 ? _regions.Count : at, region);
        _announcedBytes += range.Length;
    }

    private async ValueTask ReadRegionRemovedAsync(byte[] record, uint count, ulong firstPage, uint crc, CancellationToken cancellationToken)
    {
        CheckCrc(HeaderCrc(record), crc, "region-removed record");
        int index = _regions.FindIndex(r => r.FirstPage == firstPage && r.PageCount == count);
        if (index < 0)
        {
            throw Fail($"the removal of a region of pages {firstPage:N0}+{count:N0} that was not announced");
        }

        _regions.RemoveAt(index);
        _released.Add((firstPage, count));
        _announcedBytes -= (ulong)count * (ulong)_pageSize;
        Chain(crc);
        Consume(RecordBytes);
        if (RegionRemoved is { } removed)
        {
            try
            {
                await removed(new AddressRange(firstPage * (ulong)_pageSize, (ulong)count * (ulong)_pageSize), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new PageStreamException($"the destination could not let go of the region of pages {firstPage:N0}+{count:N0}: {e.Message}", _offset, e);
            }
        }
    }

    private async ValueTask ApplyDataAsync(byte[] record, uint count, ulong firstPage, uint crc, CancellationToken cancellationToken)
    {
        ReceivedRegion region = CheckPages(count, firstPage, MaxDataPages(_pageSize), "data");
        int dataBytes = checked((int)count * _pageSize); // at most max(1 MiB, one page): checked above
        ReadOnlySequence<byte> buffered = await NeedAsync(RecordBytes + dataBytes, $"the {count} pages of a data record", cancellationToken).ConfigureAwait(false);
        ReadOnlySequence<byte> data = buffered.Slice(RecordBytes, dataBytes);

        // Everything is checked before a byte of guest memory is written.
        uint actual = HeaderCrc(record);
        Span<uint> pageCrcs = region.Crcs.AsSpan(checked((int)(firstPage - region.FirstPage)), (int)count);
        Span<uint> computed = count <= 256 ? stackalloc uint[(int)count] : new uint[count];
        PageCrcs(data, computed);
        foreach (uint pageCrc in computed)
        {
            actual = System.Numerics.BitOperations.Crc32C(actual, pageCrc);
        }

        CheckCrc(actual, crc, $"data record for pages {firstPage:N0}+{count}");
        computed.CopyTo(pageCrcs);
        if (MemoryStartsZeroed)
        {
            region.MarkWritten(firstPage - region.FirstPage, count);
        }

        GuestMemoryMap.Snapshot regions = EnterTarget(region);
        try
        {
            ulong address = firstPage * (ulong)_pageSize;
            foreach (ReadOnlyMemory<byte> segment in data)
            {
                segment.Span.CopyTo(GuestMemoryMap.Span(region.Target, address, segment.Length));
                address += (ulong)segment.Length;
            }
        }
        finally
        {
            GuestMemoryMap.Exit(regions);
        }

        _dataPages += count;
        Chain(crc);
        Consume(RecordBytes + dataBytes);
    }

    /// <summary>
    /// Zero pages are written only where the destination page is not zero already: reading a never-touched page maps
    /// the kernel's shared zero page, where clearing it would allocate and fault in a page the guest may never use
    /// (1.9 s against 0.25 s for 512 MiB of fresh memory, measured here). With <see cref="MemoryStartsZeroed"/>, pages
    /// this reader never wrote are not even read: 64 of them are skipped with one test of the written bitmap.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a first round ends before tiering would promote it
    private void ApplyZeroPages(ReceivedRegion region, ulong firstPage, uint count)
    {
        ulong first = firstPage - region.FirstPage, end = first + count; // pages of the region
        region.Crcs.AsSpan(checked((int)first), (int)count).Fill(_zeroPageCrc);
        GuestMemoryMap.Snapshot regions = EnterTarget(region);
        try
        {
            ulong[] written = region.Written;
            for (ulong p = first; p < end;)
            {
                if (MemoryStartsZeroed)
                {
                    ulong word = written[p >> 6] >> (int)(p & 63);
                    if (word == 0)
                    {
                        p = Math.Min(end, (p | 63) + 1); // the rest of this word's pages are still fresh
                        continue;
                    }

                    ulong skip = (ulong)System.Numerics.BitOperations.TrailingZeroCount(word);
                    if (skip != 0)
                    {
                        p = Math.Min(end, p + skip);
                        continue;
                    }

                    region.MarkZero(p);
                }

                Span<byte> page = GuestMemoryMap.Span(region.Target, (region.FirstPage + p) * (ulong)_pageSize, _pageSize);
                if (page.IndexOfAnyExcept((byte)0) >= 0)
                {
                    page.Clear();
                }

                p++;
            }
        }
        finally
        {
            GuestMemoryMap.Exit(regions);
        }
    }

    /// <summary>A zero-page record: checked, applied, counted and chained.</summary>
    private void ReadZeroPages(byte[] record, uint count, ulong firstPage, uint crc)
    {
        ReceivedRegion region = CheckPages(count, firstPage, MaxZeroPages, "zero");
        CheckCrc(HeaderCrc(record), crc, "zero-page record");
        ApplyZeroPages(region, firstPage, count);
        _zeroPages += count;
        Chain(crc);
        Consume(RecordBytes);
    }

    /// <summary>The stream's end (an end record, or a post-copy record in its place): each data connection's end first, then the totals and chain.</summary>
    private async ValueTask ReadStreamEndAsync(uint count, ulong value, uint crc, CancellationToken cancellationToken)
    {
        if (_gate is { } ending)
        {
            ending.BeginEnd(); // the data connections read their end records now
            await WaitForDataConnectionsAsync(ending.WaitForEndsAsync(cancellationToken)).ConfigureAwait(false);
        }

        ReadEnd(count, value, crc, TotalDataPages + TotalZeroPages);
    }

    /// <summary>An end record: the pages it counts are <paramref name="pages"/>, and its checksum the chain of every record before it.</summary>
    private void ReadEnd(uint count, ulong value, uint crc, ulong pages)
    {
        if (count != 0 || value != pages)
        {
            throw Fail($"end marker counts {value:N0} pages, but {pages:N0} were received");
        }

        if (crc != _chain)
        {
            throw Fail($"end marker checksum 0x{crc:x8} does not match the records received (0x{_chain:x8}): a record was lost, repeated or reordered");
        }

        Consume(RecordBytes);
        _ended = true;
    }

    /// <summary>Holds the destination's memory for one record's writes; its region must still be in the map.</summary>
    private GuestMemoryMap.Snapshot EnterTarget(ReceivedRegion region)
    {
        GuestMemoryMap.Snapshot regions = _memory.Enter();
        if (Array.IndexOf(regions.Regions, region.Target) < 0)
        {
            GuestMemoryMap.Exit(regions);
            throw Fail($"the destination's memory region at 0x{region.Target.GuestAddress:x} was removed while the source still sends it");
        }

        return regions;
    }

    /// <summary>The CRC-32C of each page of <paramref name="data"/>, pages that may straddle segments included.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a first round ends before tiering would promote it
    private void PageCrcs(ReadOnlySequence<byte> data, Span<uint> crcs)
    {
        int page = 0, filled = 0;
        uint crc = ~0u;
        foreach (ReadOnlyMemory<byte> segment in data)
        {
            ReadOnlySpan<byte> rest = segment.Span;
            while (!rest.IsEmpty)
            {
                if (filled == 0 && rest.Length >= _pageSize)
                {
                    crcs[page++] = PageCrc(rest[.._pageSize]); // a whole page in one segment: the common case
                    rest = rest[_pageSize..];
                    continue;
                }

                int take = Math.Min(rest.Length, _pageSize - filled);
                crc = Crc(crc, rest[..take]); // a page split across segments: the same CRC, continued
                rest = rest[take..];
                filled += take;
                if (filled == _pageSize)
                {
                    crcs[page++] = crc;
                    crc = ~0u;
                    filled = 0;
                }
            }
        }
    }

    /// <returns>The source region that holds the record's pages.</returns>
    private ReceivedRegion CheckPages(uint count, ulong firstPage, int max, string what)
    {
        if (count == 0 || count > (uint)max)
        {
            throw Fail($"a {what} record of {count} pages (1 to {max} allowed)");
        }

        return RegionHolding(firstPage, count)
            ?? throw Fail($"a {what} record for pages {firstPage:N0}+{count} beyond the regions of memory the source announced ({_announcedBytes / (ulong)_pageSize:N0} pages)");
    }

    /// <summary>The received region that holds pages [<paramref name="firstPage"/>, + <paramref name="count"/>) whole; <see langword="null"/> if none does.</summary>
    private ReceivedRegion? RegionHolding(ulong firstPage, ulong count)
    {
        int low = 0, high = _regions.Count - 1;
        while (low <= high)
        {
            int middle = (low + high) >>> 1;
            ReceivedRegion region = _regions[middle];
            if (firstPage < region.FirstPage)
            {
                high = middle - 1;
            }
            else if (firstPage - region.FirstPage >= region.PageCount)
            {
                low = middle + 1;
            }
            else
            {
                return count <= region.PageCount - (firstPage - region.FirstPage) ? region : null;
            }
        }

        return null;
    }

    private void CheckCrc(uint actual, uint expected, string what)
    {
        if (actual != expected)
        {
            throw Fail($"{what}: checksum 0x{expected:x8} expected, 0x{actual:x8} computed");
        }
    }

    private void Chain(uint crc) => _chain = System.Numerics.BitOperations.Crc32C(_chain, crc);

    private void Consume(int bytes)
    {
        _input.AdvanceTo(_pending.GetPosition(bytes));
        _offset += bytes;
        _hasPending = false;
    }

    /// <summary>Waits for <paramref name="bytes"/> bytes; a stream that ends first is truncated.</summary>
    private async ValueTask<ReadOnlySequence<byte>> NeedAsync(int bytes, string what, CancellationToken cancellationToken)
    {
        if (_hasPending)
        {
            // A record header was looked at and its pages are needed too: nothing consumed yet.
            _input.AdvanceTo(_pending.Start);
            _hasPending = false;
        }

        ReadResult result;
        try
        {
            result = await _input.ReadAtLeastAsync(bytes, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (IsConnectionFailure(e))
        {
            throw new PageStreamException($"the connection failed while {what} was read, so the migration is incomplete: {e.Message}", _offset, e);
        }

        if (result.Buffer.Length < bytes)
        {
            _input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            throw Fail(result.IsCanceled ? $"reading {what} was cancelled" : $"the stream ended early: {what} is missing ({result.Buffer.Length} of {bytes} bytes), so the migration is incomplete");
        }

        _pending = result.Buffer;
        _hasPending = true;
        return result.Buffer;
    }

    private PageStreamException Fail(string message) => new(_connection + message, _offset);

    /// <summary>What a connection throws when it is reset or closed under a read or write (cancellation is not one).</summary>
    private static bool IsConnectionFailure(Exception e) => e is System.IO.IOException or System.Net.Sockets.SocketException or ObjectDisposedException;
}
