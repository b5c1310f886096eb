// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Mapping;
using DirtyLog.Tracking;

namespace DirtyLog.Harvesting;

/// <summary>
/// One long-lived thread per tracker: waits for a round, reads its tracker into the shared bitmap (through the
/// correlator for IOVA trackers, through a bitmap of its own first when rounds attribute pages), then reports.
/// </summary>
/// <remarks>
/// Results are written before the busy flag is cleared and the round's latch is signalled, so a coordinator that sees
/// the worker idle sees its results. A late worker finishes its read after its round gave up on it: what it reads
/// still lands in the shared bitmap, for the next round. Its idle wait ends on a dispatch or on <see cref="Stop"/>
/// (a cancellation), never on anything else; <see cref="Exited"/> completes when the thread is done, so an
/// asynchronous disposal awaits it instead of blocking a thread on a join.
/// </remarks>
internal sealed class HarvestWorker : IDisposable
{
    private readonly SemaphoreSlim _go = new(0);
    // Cancelled once, by Stop. Never disposed: Cancel may still be running on the stopping thread when the worker
    // ends, and a source whose wait handle nobody asked for holds nothing but memory.
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _stopping;
    private readonly Thread _thread;
    private readonly SparseDirtyBitmap _shared;
    private readonly SparseDirtyBitmap? _own;
    private RoundLatch? _latch;
    private DirtyReadMode _mode = DirtyReadMode.Clear; // written before the worker is released, read by it
    private bool _final;                               // likewise
    private volatile bool _exit;
    private int _busy;

    public HarvestWorker(IDirtyTracker tracker, IoAddressSpace? space, TrackerFaultPolicy policy, SparseDirtyBitmap shared, bool attribution)
    {
        Tracker = tracker;
        Space = space;
        Policy = policy;
        _shared = shared;
        _own = attribution ? new SparseDirtyBitmap(shared.AddressWidth, shared.PageSize) : null;
        _thread = new Thread(Loop) { IsBackground = true, Name = $"harvest {tracker.Name}" };
        _thread.Start();
    }

    public IDirtyTracker Tracker { get; }

    public IoAddressSpace? Space { get; }

    public TrackerFaultPolicy Policy { get; }

    public bool IsBusy => Volatile.Read(ref _busy) != 0;

    /// <summary>Completes when the thread has ended (after its read in flight, if any).</summary>
    public Task Exited => _exited.Task;

    /// <summary>Whether the last dispatch left the tracker's pages logged for <see cref="IClearBeforeSend.ClearBeforeSend"/>.</summary>
    public bool DefersClear { get; private set; }

    /// <summary>Runs of the last read (attribution only).</summary>
    public List<DirtyRun> Runs { get; } = [];

    public ulong Pages { get; private set; }

    public TimeSpan Latency { get; private set; }

    public Exception? Fault { get; private set; }

    /// <summary>Starts a read unless the last one is still running.</summary>
    /// <param name="latch">Signalled when the read ends.</param>
    /// <param name="final">The stop-copy round: read without clearing where the tracker can (nothing re-protected).</param>
    /// <param name="deferClear">Leave the pages logged where the tracker can re-protect them before they are sent.</param>
    public bool TryDispatch(RoundLatch latch, bool final = false, bool deferClear = false)
    {
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            return false;
        }

        DefersClear = !final && deferClear && Tracker is IClearBeforeSend { CanClearBeforeSend: true };
        _mode = (final && Tracker.CanReadWithoutClear) || DefersClear ? DirtyReadMode.NoClear : DirtyReadMode.Clear;
        _final = final;
        _latch = latch;
        _go.Release();
        return true;
    }

    /// <summary>Marks everything the tracker covers dirty in the shared bitmap (the fault policy's answer).</summary>
    public void MarkCoverage()
    {
        if (Space is not null)
        {
            Space.MarkAllMapped(_shared);
            return;
        }

        foreach (AddressRange r in Tracker.Coverage)
        {
            TranslatingSink.MarkBytes(_shared, r.Start, r.Length);
        }
    }

    /// <summary>
    /// The tracker leaves the harvester: one last clearing read into the shared bitmap if it can be read now, else its
    /// coverage marked there. Called with no round in progress.
    /// </summary>
    public void HandOver()
    {
        // A busy worker is still in a late read: it lands in the shared bitmap, but what the tracker logs after it
        // would never be read, so the coverage stands in for it.
        if (!IsBusy && Tracker.State == DirtyTrackerState.Started)
        {
            try
            {
                _ = Space is not null ? Space.ReadDirty(Tracker, DirtyReadMode.Clear, _shared) : ReadGuestTracker(_shared, DirtyReadMode.Clear);
                return;
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Disposed, faulted by this read, or stopped meanwhile: the coverage below.
            }
        }

        MarkCoverage();
    }

    /// <summary>Ends the thread after its current read, if any; it frees what it owns itself, so nothing is freed under a read.</summary>
    /// <param name="wait">Whether to wait for the thread (disposal) or let a late read finish in the background (removal).</param>
    public void Stop(bool wait)
    {
        if (Interlocked.Exchange(ref _stopping, 1) == 0)
        {
            _exit = true;
            _stop.Cancel();
        }

        if (wait)
        {
            _thread.Join();
        }
    }

    /// <summary>As <see cref="Stop"/>, waiting.</summary>
    public void Dispose() => Stop(wait: true);

    private void Loop()
    {
        while (true)
        {
            try
            {
                _go.Wait(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                break; // stopped while idle
            }

            if (_exit)
            {
                break;
            }

            ReadOnce();
            RoundLatch latch = _latch!;
            Volatile.Write(ref _busy, 0);
            latch.Signal();
        }

        // Only this thread uses these, and it is done with them.
        _go.Dispose();
        _own?.Dispose();
        _exited.SetResult();
    }

    private void ReadOnce()
    {
        long start = Stopwatch.GetTimestamp();
        Fault = null;
        Pages = 0;
        Runs.Clear();
        try
        {
            // The final round skips attribution: straight into the shared bitmap, one pass less inside the downtime.
            SparseDirtyBitmap? own = _final ? null : _own;
            SparseDirtyBitmap target = own ?? _shared;
            ulong pages = Space is not null
                ? Space.ReadDirty(Tracker, _mode, target)
                : ReadGuestTracker(target, _mode);
            if (own is not null)
            {
                // Attribution: the tracker's pages, as runs, then into the shared bitmap.
                var sink = new ListRunSink(Runs);
                own.Harvest(ref sink);
                foreach (DirtyRun run in Runs)
                {
                    _shared.MarkRange(run.FirstPage, run.PageCount);
                }

                pages = sink.Pages;
            }

            Pages = pages;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Fault = e;
        }

        Latency = Stopwatch.GetElapsedTime(start);
    }

    private ulong ReadGuestTracker(SparseDirtyBitmap target, DirtyReadMode mode)
    {
        IReadOnlyList<AddressRange> coverage = Tracker.Coverage;
        ulong pages = 0;
        if (coverage.Count != 0)
        {
            var hull = new AddressRange(coverage[0].Start, coverage[^1].End - coverage[0].Start);
            pages = Tracker.ReadDirty(hull, target, mode) * (ulong)(Tracker.PageSize / target.PageSize);
        }

        return pages;
    }
}
