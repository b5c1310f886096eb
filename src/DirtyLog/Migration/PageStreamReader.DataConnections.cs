// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Migration;

/// <summary>
/// The reader's data connections (format version 4): granted in the header's acceptance, each read by a reader of its
/// own on a thread of its own that checks and applies its pages, all sharing the control reader's regions and memory.
/// </summary>
/// <remarks>
/// Ordering (see <see cref="DataConnectionGate"/>): a data connection applies round N's pages only after the control
/// connection read round N's begin, and the control connection reads round N's end (and acknowledges it) only after
/// every data connection applied its share; region changes and state come only between rounds, when no data
/// connection applies anything. So a round's pages never meet a region change, and a later copy of a page always
/// wins. A data connection's failure fails the stream: the control reader stops with it.
/// </remarks>
public sealed partial class PageStreamReader
{
    private DataConnectionGate? _gate;
    private CancellationTokenSource? _controlReads;            // the control reader's reads, cancelled when a data connection fails
    private PageStreamReader[] _dataConnections = [];
    private readonly List<Stream> _dataConnectionStreams = [];  // the reader's to dispose: it accepted them
    private Task[] _dataConnectionReads = [];
    private readonly List<string> _refusedDataConnections = [];
    private CancellationTokenSource? _stopDataConnections;     // their reads: a stream whose dispose leaves a read pending still stops

    /// <summary>A data connection's reader: its own connection, counts and chain; its control's regions and memory.</summary>
    private PageStreamReader(PageStreamReader control, PipeReader input, int index)
    {
        _input = input;
        _memory = control._memory;
        _pageSize = control._pageSize;
        _regions = control._regions;
        _zeroPageCrc = control._zeroPageCrc;
        MemoryStartsZeroed = control.MemoryStartsZeroed;
        _connection = $"data connection {index}: ";
        _offset = HeaderBytes;
    }

    /// <summary>How many data connections the stream's header asked for (0: version 2 or 3, one connection).</summary>
    internal int RequestedDataConnections { get; private set; }

    /// <summary>The most data connections this reader grants (capped at 64); 0, the default, grants none.</summary>
    internal int MaxDataConnections { get; init; }

    /// <summary>Accepts the next connection from the source (a migration session's connection factory); needed to grant any.</summary>
    internal Func<CancellationToken, ValueTask<Stream>>? AcceptDataConnection { get; init; }

    /// <summary>How long the granted data connections may take to arrive, all of them. 30 s by default.</summary>
    internal TimeSpan DataConnectionTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The token the data connections presented (0 when none was granted); post-copy's recovered connections present it too.</summary>
    internal ulong DataConnectionToken { get; private set; }

    /// <summary>How many data connections carry the pages (0: the control connection does).</summary>
    internal int DataConnections => _dataConnections.Length;

    private ulong TotalDataPages => _dataPages + Sum(r => r._dataPages);

    private ulong TotalZeroPages => _zeroPages + Sum(r => r._zeroPages);

    private long TotalBytesRead => _offset + (long)Sum(r => (ulong)r._offset);

    /// <summary>
    /// Tells the source the header is accepted, with the data connections granted (as many as it asked, at most
    /// <see cref="MaxDataConnections"/>) and their token, then waits for them; a connection that does not present
    /// itself as one of them is dropped, and the next one awaited, until the timeout.
    /// </summary>
    private async ValueTask AcceptHeaderAsync(CancellationToken cancellationToken)
    {
        int granted = AcceptDataConnection is null ? 0 : Math.Min(RequestedDataConnections, Math.Min(MaxDataConnections, PageStreamFormat.MaxDataConnections));
        PostCopyGranted = granted > 0 && PostCopyOffered && AllowPostCopy && OperatingSystem.IsLinux(); // the push needs a data connection; the faults, userfaultfd
        ulong token = 0;
        while (granted > 0 && token == 0)
        {
            token = BinaryPrimitives.ReadUInt64LittleEndian(RandomNumberGenerator.GetBytes(8));
        }

        if (Acknowledgements is { } acks)
        {
            Span<byte> ack = acks.GetSpan(AckBytes)[..AckBytes];
            ack.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(ack, AckMagic);
            BinaryPrimitives.WriteUInt32LittleEndian(ack[4..], (uint)granted | (PostCopyGranted ? PageStreamFormat.PostCopyGranted : 0));
            BinaryPrimitives.WriteUInt64LittleEndian(ack[8..], HeaderAccepted);
            BinaryPrimitives.WriteUInt64LittleEndian(ack[16..], token);
            acks.Advance(AckBytes);
            try
            {
                await acks.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (IsConnectionFailure(e))
            {
                throw new PageStreamException($"the header's acceptance could not be sent: {e.Message}", _offset, e);
            }
        }

        DataConnectionToken = token;
        if (granted > 0)
        {
            await AcceptDataConnectionsAsync(granted, token, cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask AcceptDataConnectionsAsync(int granted, ulong token, CancellationToken cancellationToken)
    {
        var readers = new PageStreamReader?[granted];
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(DataConnectionTimeout);
        for (int arrived = 0; arrived < granted;)
        {
            Stream stream;
            try
            {
                stream = await AcceptDataConnection!(timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                string refused = _refusedDataConnections.Count == 0 ? "" : $"; refused: {string.Join("; ", _refusedDataConnections)}";
                throw Fail($"{arrived} of the {granted} data connections granted arrived ({(timeout.IsCancellationRequested ? $"none more within {DataConnectionTimeout.TotalSeconds:F0} s" : e.Message)}){refused}");
            }

            if (stream is null || !stream.CanRead)
            {
                stream?.Dispose();
                throw Fail($"the connection factory gave a data connection {(stream is null ? "as null" : "that cannot be read")}");
            }

            lock (_dataConnectionStreams)
            {
                _dataConnectionStreams.Add(stream);
            }

            // Reads of up to 2 MiB: a 1 MiB record in a few socket reads, not in 256 of the default 4 KiB.
            PipeReader input = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: PageStreamWriter.RecommendedBufferSize, minimumReadSize: 64 << 10, leaveOpen: true));
            (int index, string? refusal) = await ReadDataConnectionHeaderAsync(input, granted, token, readers, timeout.Token).ConfigureAwait(false);
            if (refusal is not null)
            {
                // Nothing of it was applied: drop it and wait for the connection that was granted.
                _refusedDataConnections.Add(refusal);
                await stream.DisposeAsync().ConfigureAwait(false);
                continue;
            }

            readers[index] = new PageStreamReader(this, input, index);
            arrived++;
        }

        _dataConnections = readers!;
        var gate = new DataConnectionGate(granted);
        gate.Failed += () => CancelQuietly(_controlReads);
        _gate = gate;
        _stopDataConnections = new CancellationTokenSource();
        CancellationToken stop = _stopDataConnections.Token;
        _dataConnectionReads = new Task[granted];
        for (int i = 0; i < granted; i++)
        {
            PageStreamReader reader = _dataConnections[i];
            int index = i;
            // A thread each: a connection whose reads block (a synchronous socket) keeps its pages on its own core.
            _dataConnectionReads[i] = Task.Factory.StartNew(() => reader.ReadDataConnectionAsync(gate, index, stop).AsTask(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        }
    }

    /// <summary>Reads a data connection's header; a refusal says why it is not one of those granted.</summary>
    private async ValueTask<(int Index, string? Refusal)> ReadDataConnectionHeaderAsync(PipeReader input, int granted, ulong token, PageStreamReader?[] readers, CancellationToken cancellationToken)
    {
        ReadResult result;
        try
        {
            result = await input.ReadAtLeastAsync(HeaderBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (IsConnectionFailure(e) || e is OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return (-1, $"a connection failed before its header: {e.Message}");
        }
        catch (OperationCanceledException)
        {
            return (-1, "a connection sent no data-connection header in time");
        }

        if (result.Buffer.Length < HeaderBytes)
        {
            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            return (-1, $"a connection closed after {result.Buffer.Length} bytes of its header");
        }

        Span<byte> h = stackalloc byte[HeaderBytes];
        result.Buffer.Slice(0, HeaderBytes).CopyTo(h);
        input.AdvanceTo(result.Buffer.GetPosition(HeaderBytes));
        int index = BinaryPrimitives.ReadUInt16LittleEndian(h[6..]);
        string? refusal =
            BinaryPrimitives.ReadUInt32LittleEndian(h) != DataConnectionMagic ? "a connection that is not a data connection (its magic is not \"DLPL\")"
            : BinaryPrimitives.ReadUInt16LittleEndian(h[4..]) != VersionWithDataConnections ? $"a data connection of version {BinaryPrimitives.ReadUInt16LittleEndian(h[4..])}"
            : BinaryPrimitives.ReadUInt64LittleEndian(h[16..]) != token ? "a data connection with another stream's token"
            : BinaryPrimitives.ReadUInt32LittleEndian(h[12..]) != (uint)granted ? $"a data connection that counts {BinaryPrimitives.ReadUInt32LittleEndian(h[12..])} of them, not the {granted} granted"
            : BinaryPrimitives.ReadUInt32LittleEndian(h[8..]) != (uint)_pageSize ? $"a data connection with {BinaryPrimitives.ReadUInt32LittleEndian(h[8..])}-byte pages"
            : index >= granted ? $"data connection {index} of {granted}"
            : readers[index] is not null ? $"data connection {index} a second time"
            : null;
        return (index, refusal);
    }

    /// <summary>
    /// A data connection's records: it waits for each round's begin on the control connection, applies its share, and
    /// says so at its round end; at the control connection's end, it checks its own end record.
    /// </summary>
    /// <remarks>It stops when it fails, or when <see cref="CloseDataConnectionsAsync"/> cancels it and disposes its connection.</remarks>
    private async ValueTask ReadDataConnectionAsync(DataConnectionGate gate, int index, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                bool ending = await gate.WaitToBeginAsync(_rounds + 1, cancellationToken).ConfigureAwait(false);
                if (await ReadShareAsync(ending, cancellationToken).ConfigureAwait(false))
                {
                    gate.Ended(index);
                    return;
                }

                gate.Finished(index, _rounds);
            }
        }
        catch (Exception e)
        {
            // Every failure names its connection: the control connection's error is the migration's.
            gate.Fail(e is PageStreamException named && named.Message.StartsWith(_connection, StringComparison.Ordinal) ? named : new PageStreamException($"{_connection}{e.Message}", _offset, e));
        }
    }

    /// <summary>One round's share, up to its round end; or, once the control connection ended, the end record.</summary>
    /// <returns>Whether it was the end.</returns>
    private async ValueTask<bool> ReadShareAsync(bool ending, CancellationToken cancellationToken)
    {
        while (true)
        {
            ReadOnlySequence<byte> buffered = await NeedAsync(RecordBytes, ending ? "the end record" : $"a record of round {_rounds + 1}", cancellationToken).ConfigureAwait(false);
            byte[] record = buffered.Slice(0, RecordBytes).ToArray();
            byte kind = record[0];
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(4));
            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(8));
            uint crc = ReadCrc(record);
            CheckReserved(record);
            switch (kind)
            {
                case Data when !ending:
                    await ApplyDataAsync(record, count, value, crc, cancellationToken).ConfigureAwait(false);
                    break;
                case Zero when !ending:
                    ReadZeroPages(record, count, value, crc);
                    break;
                case RoundEnd when !ending:
                    if (count != 0 || value != (ulong)_rounds + 1)
                    {
                        throw Fail($"round-end record says round {value} with {count} pages; round {_rounds + 1} with 0 was expected");
                    }

                    CheckCrc(HeaderCrc(record), crc, "round-end record");
                    Chain(crc);
                    Consume(RecordBytes);
                    _rounds++;
                    return false;
                case End when ending:
                    ReadEnd(count, value, crc, _dataPages + _zeroPages);
                    return true;
                default:
                    throw Fail(ending
                        ? $"record kind {kind} where the end record was expected (the control connection ended)"
                        : $"record kind {kind} on a data connection (only pages and round ends go there)");
            }
        }
    }

    /// <summary>What the control connection may carry where it is: with data connections, no pages, and nothing but the end of a round inside one.</summary>
    private void CheckOnControlConnection(byte kind, bool inRound)
    {
        if (_gate is null)
        {
            if (kind == RoundBegin)
            {
                throw Fail("a round-begin record on a stream without data connections");
            }

            return;
        }

        if (kind is Data or Zero)
        {
            throw Fail("a page record on the control connection: with data connections, pages go over them");
        }

        if (inRound && kind != RoundEnd)
        {
            throw Fail($"record kind {kind} inside round {_rounds + 1}, while the data connections apply it");
        }

        if (!inRound && kind == RoundEnd)
        {
            throw Fail($"the end of round {_rounds + 1} before its begin");
        }
    }

    /// <summary>Waits on the data connections; one that failed fails the control connection with its reason.</summary>
    private async ValueTask WaitForDataConnectionsAsync(Task wait)
    {
        try
        {
            await wait.ConfigureAwait(false);
        }
        catch (DataConnectionGate.FailedException failed)
        {
            throw DataConnectionFailed(failed.InnerException!);
        }
    }

    private PageStreamException DataConnectionFailed(Exception failure) => new($"the stream failed on {failure.Message}", _offset, failure);

    /// <summary>
    /// Stops the data connections' readers, waits until none applies anything, and disposes their connections (the
    /// reader accepted them); a migration session's last step, whatever the end.
    /// </summary>
    internal async ValueTask CloseDataConnectionsAsync()
    {
        _gate?.Fail(new PageStreamException("the migration session closed its data connections")); // a reader waiting for a round stops
        CancelQuietly(_stopDataConnections); // and one reading
        Stream[] streams;
        lock (_dataConnectionStreams)
        {
            streams = [.. _dataConnectionStreams];
            _dataConnectionStreams.Clear();
        }

        foreach (Stream stream in streams)
        {
            await stream.DisposeAsync().ConfigureAwait(false); // a blocked read returns now
        }

        foreach (Task read in _dataConnectionReads)
        {
            await read.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // its failure, if any, was the gate's
        }

        _stopDataConnections?.Dispose();

    }

    private ulong Sum(Func<PageStreamReader, ulong> counter)
    {
        ulong sum = 0;
        foreach (PageStreamReader reader in _dataConnections)
        {
            sum += counter(reader);
        }

        return sum;
    }

    private static void CancelQuietly(CancellationTokenSource? source)
    {
        try
        {
            source?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The read it stopped is over.
        }
    }
}
