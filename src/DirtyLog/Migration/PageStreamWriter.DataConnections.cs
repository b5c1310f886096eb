// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Memory;
using DirtyLog.Tracking;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Migration;

/// <summary>
/// The writer's data connections (format version 4): a round's pages are cut into shares of at most 1 MiB that the
/// data connections take from one queue, each on a task of its own, copying, zero-testing and checksumming its pages
/// itself; the control connection keeps the regions, the round begin and end, the state and the end.
/// </summary>
/// <remarks>
/// Ordering: within a round every page is in one share (a round's runs are a set), so two connections never carry the
/// same page in one round. Across rounds, the control connection's round end follows every data connection's round end
/// (the destination reads it only once they all applied their share) and the next round begins after it on the control
/// connection, which the destination's data connections wait for: a later copy of a page is applied after an earlier
/// one, whichever connections carried them.
/// </remarks>
public sealed partial class PageStreamWriter
{
    private PageStreamWriter[]? _dataConnections;
    private readonly List<PageStreamWriter> _adding = [];

    /// <summary>
    /// How many data connections the header asks the destination for (format version 4); 0 for one connection
    /// (version 3). A migration session's; the destination's grant, which may be fewer or none, is what
    /// <see cref="AddDataConnectionAsync"/> then gets.
    /// </summary>
    internal int RequestedDataConnections { get; init; }

    /// <summary>How many data connections the rounds go over; 0 for the control connection alone.</summary>
    internal int DataConnections => _dataConnections?.Length ?? 0;

    /// <summary>
    /// After the header was accepted: one of the data connections the destination granted, told at once its index
    /// and the destination's token (the destination reads each one's header before it accepts the next). Once all
    /// <paramref name="connections"/> are added, pages go over them from the next round on, and none over the control connection.
    /// </summary>
    /// <param name="output">The connection's pipe; they are added in index order.</param>
    /// <param name="connections">How many were granted.</param>
    /// <param name="token">The token the destination granted them with.</param>
    /// <param name="cancellationToken">Cancels the flush.</param>
    internal async ValueTask AddDataConnectionAsync(PipeWriter output, int connections, ulong token, CancellationToken cancellationToken)
    {
        if (!_headerWritten || Rounds != 0 || _dataConnections is not null || connections is <= 0 or > MaxDataConnections || connections > RequestedDataConnections)
        {
            throw new InvalidOperationException("Data connections are added after the header and before the first round, no more than the header asked for.");
        }

        var connection = new PageStreamWriter(output, _memory, _pageSize);
        WriteDataConnectionHeader(connection._output.GetSpan(HeaderBytes), _adding.Count, connections, (uint)_pageSize, token);
        connection._output.Advance(HeaderBytes);
        connection._bytesWritten += HeaderBytes;
        _adding.Add(connection);
        await connection.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (_adding.Count == connections)
        {
            _dataConnections = [.. _adding];
        }
    }

    /// <summary>The round begin on the control connection, the shares over the data connections, then the round end everywhere.</summary>
    private async ValueTask WriteRoundOnDataConnectionsAsync(PageStreamWriter[] connections, ReadOnlyMemory<DirtyRun> runs, RegionPlan plan, bool chunked, HarvestRound? round, CancellationToken cancellationToken)
    {
        var shares = new ShareQueue(Shares(runs, plan));
        Rounds++;
        WriteControl(RoundBegin, (ulong)Rounds);
        await FlushAsync(cancellationToken).ConfigureAwait(false);

        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var sends = new Task[connections.Length];
        for (int i = 0; i < sends.Length; i++)
        {
            PageStreamWriter connection = connections[i];
            sends[i] = Task.Run(() => connection.SendSharesAsync(shares, chunked, round, failed), CancellationToken.None);
        }

        try
        {
            await Task.WhenAll(sends).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The first real failure, not the cancellations it caused on the other connections.
            foreach (Task send in sends)
            {
                if (send.Exception?.InnerException is { } cause and not OperationCanceledException)
                {
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(cause);
                }
            }

            throw;
        }

        WriteControl(RoundEnd, (ulong)Rounds);
        await FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A data connection's part of a round: shares until none is left, then its round end.</summary>
    private async Task SendSharesAsync(ShareQueue shares, bool chunked, HarvestRound? round, CancellationTokenSource failed)
    {
        try
        {
            while (shares.TryTake(out Share share))
            {
                await WriteSegmentAsync(share.Region, share.FirstPage, share.EndPage, chunked, round, null, failed.Token).ConfigureAwait(false);
            }

            Rounds++;
            WriteControl(RoundEnd, (ulong)Rounds);
            await FlushAsync(failed.Token).ConfigureAwait(false);
        }
        catch (Exception)
        {
            failed.Cancel(); // the round fails as a whole: the others stop too
            throw;
        }
    }

    /// <summary>Each data connection's end record: its pages and the chain of its records.</summary>
    private static async ValueTask EndDataConnectionsAsync(PageStreamWriter[] connections, CancellationToken cancellationToken)
    {
        foreach (PageStreamWriter connection in connections)
        {
            Span<byte> span = connection._output.GetSpan(RecordBytes);
            WriteRecord(span, End, 0, connection._dataPages + connection._zeroPages);
            WriteCrc(span, connection._chain);
            connection._output.Advance(RecordBytes);
            connection._bytesWritten += RecordBytes;
            connection._ended = true;
            await connection.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The round's live pages cut at region ends and every 1 MiB of pages, in page order.</summary>
    private List<Share> Shares(ReadOnlyMemory<DirtyRun> runs, RegionPlan plan)
    {
        var shares = new List<Share>();
        ulong step = (ulong)MaxDataPages(_pageSize);
        foreach (DirtyRun run in runs.Span)
        {
            for (ulong page = run.FirstPage; page < run.EndPage;)
            {
                int live = IndexOf(_announced, page * (ulong)_pageSize);
                if (live < 0)
                {
                    page = plan.SkipFrom(page, run.EndPage, _pageSize) ?? plan.NextLive(page, run.EndPage, _pageSize);
                    continue;
                }

                HostMemoryRegion region = _announced[live];
                ulong segmentEnd = Math.Min(run.EndPage, (region.GuestAddress + region.Length) / (ulong)_pageSize);
                for (; page < segmentEnd; page = Math.Min(segmentEnd, page + step))
                {
                    shares.Add(new Share(region, page, Math.Min(segmentEnd, page + step)));
                }
            }
        }

        return shares;
    }

    private ulong SumOfDataConnections(Func<PageStreamWriter, ulong> counter)
    {
        ulong sum = 0;
        foreach (PageStreamWriter connection in _dataConnections ?? [])
        {
            sum += counter(connection);
        }

        return sum;
    }

    /// <summary>Pages [<see cref="FirstPage"/>, <see cref="EndPage"/>) of one region: at most one data record's worth.</summary>
    private readonly record struct Share(HostMemoryRegion Region, ulong FirstPage, ulong EndPage);

    /// <summary>The round's shares, taken in order by whichever data connection is free first. Thread-safe.</summary>
    private sealed class ShareQueue(List<Share> shares)
    {
        private int _next = -1;

        public bool TryTake(out Share share)
        {
            int index = Interlocked.Increment(ref _next);
            share = index < shares.Count ? shares[index] : default;
            return index < shares.Count;
        }
    }
}
