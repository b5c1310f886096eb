// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Tracking;

namespace DirtyLog.Harvesting;

/// <summary>
/// One round's dirty set, taken from the shared bitmap, and what each tracker contributed. The set is only gone
/// once the consumer commits it: until then it can be put back, and disposing an uncommitted round puts it back.
/// </summary>
/// <remarks>
/// <para>Thread safety: <see cref="Commit"/>, <see cref="PutBack"/> and <see cref="Dispose"/> may race; exactly one of
/// commit or put-back happens. Put the round back when sending failed: the pages are marked dirty again and the next
/// round returns them (with whatever was written since).</para>
/// <para><see cref="Runs"/> lives in a pooled buffer: it is valid until the round is committed, put back or disposed,
/// and empty afterwards. Copy what must outlive the round.</para>
/// </remarks>
public sealed class HarvestRound : IDisposable
{
    private const int Pending = 0, Committed = 1, PutBackState = 2;

    private readonly SparseDirtyBitmap _shared;
    private DirtyRun[]? _buffer;
    private readonly int _count;
    private int _state;

    internal HarvestRound(long number, DirtyRun[] runs, int count, ulong pages, TimeSpan duration, TrackerRoundReport[] trackers, ulong pagesSeenBySeveral, SparseDirtyBitmap shared)
    {
        Number = number;
        _buffer = runs;
        _count = count;
        Pages = pages;
        Duration = duration;
        Trackers = trackers;
        PagesSeenBySeveral = pagesSeenBySeveral;
        _shared = shared;
    }

    /// <summary>The round's number, from 1.</summary>
    public long Number { get; }

    /// <summary>The dirty pages, as maximal runs in ascending order; empty once the round is settled.</summary>
    public ReadOnlySpan<DirtyRun> Runs => Volatile.Read(ref _buffer) is { } runs ? runs.AsSpan(0, _count) : default;

    /// <summary>
    /// <see cref="Runs"/> as memory, for an asynchronous consumer that sends them without a copy
    /// (<c>PageStreamWriter.WriteRoundAsync(HarvestRound, ...)</c> uses it). It is the round's own pooled buffer: use
    /// it only until the round is committed, put back or disposed, that is, await the send before settling the round.
    /// </summary>
    public ReadOnlyMemory<DirtyRun> RunMemory => Volatile.Read(ref _buffer) is { } runs ? runs.AsMemory(0, _count) : default;

    /// <summary>The trackers whose pages this round left logged, to be re-protected before they are sent.</summary>
    internal IClearBeforeSend[] Deferred { get; init; } = [];

    /// <summary>
    /// Re-protects, in the trackers that left them logged (<see cref="HarvesterOptions.ClearBeforeSend"/>), the pages
    /// [<paramref name="firstPage"/>, + <paramref name="pageCount"/>) that the consumer is about to read and send.
    /// Call it before reading each chunk's memory; a page never cleared stays logged and comes again next round.
    /// </summary>
    /// <param name="firstPage">The first page, in the shared bitmap's pages.</param>
    /// <param name="pageCount">Pages.</param>
    /// <exception cref="InvalidOperationException">The round is settled.</exception>
    public void ClearBeforeSend(ulong firstPage, ulong pageCount)
    {
        if (Volatile.Read(ref _state) != Pending)
        {
            throw new InvalidOperationException($"Round {Number} is settled: its pages were sent or put back.");
        }

        var range = new AddressRange(firstPage * (ulong)_shared.PageSize, pageCount * (ulong)_shared.PageSize);
        foreach (IClearBeforeSend tracker in Deferred)
        {
            tracker.ClearBeforeSend(range);
        }
    }

    /// <summary>Pages in <see cref="Runs"/>.</summary>
    public ulong Pages { get; }

    /// <summary>From dispatch to the runs: the slowest tracker's read, plus the harvest of the shared bitmap.</summary>
    public TimeSpan Duration { get; }

    /// <summary>Each tracker's part, in the order they were added.</summary>
    public IReadOnlyList<TrackerRoundReport> Trackers { get; }

    /// <summary>Pages that more than one tracker reported in this round (zero when attribution is off).</summary>
    public ulong PagesSeenBySeveral { get; }

    /// <summary>Whether the consumer committed the round.</summary>
    public bool IsCommitted => Volatile.Read(ref _state) == Committed;

    /// <summary>Whether the round's pages were put back into the shared bitmap.</summary>
    public bool IsPutBack => Volatile.Read(ref _state) == PutBackState;

    /// <summary>The consumer has the pages (they were sent): the round's dirty set is gone for good.</summary>
    /// <exception cref="InvalidOperationException">The round was put back.</exception>
    public void Commit()
    {
        int was = Interlocked.CompareExchange(ref _state, Committed, Pending);
        if (was == PutBackState)
        {
            throw new InvalidOperationException($"Round {Number} was put back; it cannot be committed.");
        }

        if (was == Pending)
        {
            Release();
        }
    }

    /// <summary>The consumer failed: marks the round's pages dirty again. Repeating it does nothing.</summary>
    /// <exception cref="InvalidOperationException">The round was committed.</exception>
    /// <exception cref="ObjectDisposedException">The shared bitmap was disposed: the pages have nowhere to go back to.</exception>
    public void PutBack()
    {
        if (TryPutBack() == Committed)
        {
            throw new InvalidOperationException($"Round {Number} was committed; its pages are gone.");
        }
    }

    /// <summary>Puts the pages back unless the round was committed. Never throws.</summary>
    /// <remarks>After the shared bitmap was disposed there is nothing to put the pages back into: they are dropped with it.</remarks>
    public void Dispose()
    {
        try
        {
            TryPutBack();
        }
        catch (ObjectDisposedException)
        {
            Release();
        }
    }

    /// <returns>The state before.</returns>
    private int TryPutBack()
    {
        int was = Interlocked.CompareExchange(ref _state, PutBackState, Pending);
        if (was == Pending)
        {
            foreach (DirtyRun run in Runs)
            {
                _shared.MarkRange(run.FirstPage, run.PageCount);
            }

            Release();
        }

        return was;
    }

    private void Release()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer)
        {
            ArrayPool<DirtyRun>.Shared.Return(buffer);
        }
    }
}
