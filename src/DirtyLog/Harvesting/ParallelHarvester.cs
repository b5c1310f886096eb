// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Mapping;
using DirtyLog.Tracking;

namespace DirtyLog.Harvesting;

/// <summary>
/// Reads every tracker at once, one long-lived worker each, into the shared guest-page bitmap (IOVA trackers through
/// their correlator address space), then takes the round's dirty set from that bitmap as page runs.
/// </summary>
/// <remarks>
/// <para><b>Rounds.</b> A round's latency follows its slowest tracker, not the sum: workers are dispatched together
/// and the round waits for all of them, or for its deadline. A tracker that fails or misses the deadline has its
/// coverage marked dirty (a failed one is restarted first, so its fresh epoch misses nothing), and its
/// <see cref="TrackerFaultPolicy"/> says whether the round then fails with a <see cref="HarvestException"/> naming it
/// or goes on. Either way nothing is lost: what the others read stays in the shared bitmap for the next round, and a
/// late tracker's read lands there when it finishes (until then the tracker counts as late).</para>
/// <para><b>Transactions.</b> A round's pages leave the shared bitmap when the round is taken, and come back if the
/// consumer puts the round back (or disposes it uncommitted): see <see cref="HarvestRound"/>.</para>
/// <para><b>Thread safety.</b> Every member may be called from any thread. Rounds are serialised;
/// <see cref="Add(IDirtyTracker, TrackerFaultPolicy)"/> and the start and stop calls may come between rounds or during
/// them; <see cref="Remove"/> and <see cref="Dispose"/> wait for a round in progress. Once <see cref="Dispose"/> has
/// returned, no tracker is left started by this harvester: a racing <see cref="StartTracking"/> either finished before
/// the disposal stopped everything or throws <see cref="ObjectDisposedException"/>. Writers keep marking the shared
/// bitmap during rounds (its guarantees hold: a mark that races a round is returned by it or the next).</para>
/// <para><b>Locks, in the order they are taken:</b> the life-cycle lock (start, stop, add, remove, dispose), then the
/// round lock, then the list of workers; a tracker's own lock only inside these, never the other way round.</para>
/// <para><b>Telemetry.</b> Each round is an activity and feeds the <c>DirtyLog</c> meter: see
/// <see cref="DirtyLogTelemetry"/>.</para>
/// </remarks>
public sealed class ParallelHarvester : IDisposable, IAsyncDisposable
{
    private readonly List<HarvestWorker> _workers = [];
    private readonly Lock _lifecycle = new();
    private readonly Lock _round = new();
    // _disposed is written once, under _lifecycle and _round together, so reading it under either one is enough.
    private long _rounds;
    private int _lastRunCount;
    private bool _disposed;
    private RoundLatch? _warmUp; // the reads StartTracking began, until the first round waited for them; under _round

    /// <summary>Creates a harvester over the shared bitmap.</summary>
    /// <param name="shared">The guest-page bitmap every tracker merges into.</param>
    /// <param name="options">How rounds run; defaults when omitted.</param>
    public ParallelHarvester(SparseDirtyBitmap shared, HarvesterOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(shared);
        Shared = shared;
        Options = options ?? new HarvesterOptions();
    }

    /// <summary>The shared guest-page bitmap.</summary>
    public SparseDirtyBitmap Shared { get; }

    /// <summary>How rounds run.</summary>
    public HarvesterOptions Options { get; }

    /// <summary>Rounds completed.</summary>
    public long Rounds => Interlocked.Read(ref _rounds);

    /// <summary>The trackers, in the order they were added.</summary>
    public IReadOnlyList<IDirtyTracker> Trackers
    {
        get
        {
            lock (_workers)
            {
                return _workers.Select(w => w.Tracker).ToArray();
            }
        }
    }

    /// <summary>Adds a tracker that reports in guest-physical space, and starts its worker.</summary>
    /// <param name="tracker">The tracker.</param>
    /// <param name="policy">What a round does when it fails or is late.</param>
    /// <exception cref="ArgumentException">The tracker reports IOVA (add it with its address space), or was added already.</exception>
    public void Add(IDirtyTracker tracker, TrackerFaultPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(tracker);
        if (tracker.AddressSpace != DirtyAddressSpace.GuestPhysical)
        {
            throw new ArgumentException($"{tracker.Name} reports {tracker.AddressSpace}: add it with the address space that translates it.", nameof(tracker));
        }

        AddWorker(tracker, null, policy);
    }

    /// <summary>Adds an IOVA tracker, read through its correlator address space, and starts its worker.</summary>
    /// <param name="tracker">The tracker, attached to <paramref name="space"/>.</param>
    /// <param name="space">The address space that translates its IOVAs.</param>
    /// <param name="policy">What a round does when it fails or is late.</param>
    /// <exception cref="ArgumentException">The tracker reports another address space, or was added already.</exception>
    public void Add(IDirtyTracker tracker, IoAddressSpace space, TrackerFaultPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(tracker);
        ArgumentNullException.ThrowIfNull(space);
        if (tracker.AddressSpace != DirtyAddressSpace.Iova(space.Id))
        {
            throw new ArgumentException($"{tracker.Name} reports {tracker.AddressSpace}, not IOVA space {space.Id}.", nameof(tracker));
        }

        AddWorker(tracker, space, policy);
    }

    /// <summary>
    /// Starts every tracker that is not started. A faulted tracker is stopped and started again, and its coverage is
    /// marked dirty in the shared bitmap (what it had logged is unknown). If one fails, those this call started are
    /// stopped again and the failure is thrown.
    /// </summary>
    /// <exception cref="DirtyTrackerException">A tracker could not start (or, faulted, could not stop first).</exception>
    /// <exception cref="ObjectDisposedException">The harvester was disposed.</exception>
    public void StartTracking()
    {
        lock (_lifecycle)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var started = new List<IDirtyTracker>();
            try
            {
                foreach (HarvestWorker worker in Snapshot())
                {
                    IDirtyTracker tracker = worker.Tracker;
                    DirtyTrackerState state = tracker.State;
                    if (state == DirtyTrackerState.Started)
                    {
                        continue;
                    }

                    if (state == DirtyTrackerState.Faulted)
                    {
                        tracker.StopTracking();
                    }

                    tracker.StartTracking();
                    started.Add(tracker);
                    if (state == DirtyTrackerState.Faulted)
                    {
                        worker.MarkCoverage(); // after the restart, so that it covers every write the new epoch missed
                    }
                }
            }
            catch
            {
                foreach (IDirtyTracker tracker in started)
                {
                    try
                    {
                        tracker.StopTracking();
                    }
                    catch (DirtyTrackerException)
                    {
                        // The start failure is the one to report; this tracker is faulted and says so.
                    }
                }

                throw;
            }

            if (started.Count != 0)
            {
                WarmUp(Options.ReadOnStart);
            }
        }
    }

    /// <summary>
    /// Readies the first round: the merge and harvest paths run once on a scratch bitmap (no side effect), and with
    /// <paramref name="read"/> (<see cref="HarvesterOptions.ReadOnStart"/>) every idle worker reads its tracker once
    /// into the shared bitmap. The first use of each path of a round (JIT, a worker thread's first run, a tracker's
    /// buffers) made a first round on one KVM slot cost about 28 ms against 0.2 ms for the next ones; with both, about
    /// 3 ms. Lossless: the reads land in the shared bitmap for the first round, which waits for any still running
    /// (within its deadline) before reading again; a read that fails is that round's to handle, as any fault.
    /// </summary>
    private void WarmUp(bool read)
    {
        if (read)
        {
            RoundLatch latch;
            lock (_round)
            {
                HarvestWorker[] workers = Snapshot().Where(w => !w.IsBusy && w.Tracker.State == DirtyTrackerState.Started).ToArray();
                latch = new RoundLatch(workers.Length);
                foreach (HarvestWorker worker in workers)
                {
                    if (!worker.TryDispatch(latch))
                    {
                        latch.Signal();
                    }
                }

                _warmUp = latch;
            }

            latch.Done.Wait(TimeSpan.FromSeconds(1)); // a slower read is the first round's to wait for
        }

        // The merge and harvest paths only run when pages are dirty, which they may not be yet.
        using var scratch = new SparseDirtyBitmap(Shared.AddressWidth, Shared.PageSize);
        ReadOnlySpan<ulong> words = [0b1011, 0, ulong.MaxValue, 1];
        scratch.MergeBitmap(words, 64, 256, 0);
        scratch.MarkRange(4096, 3);
        var runs = new PooledRunSink(16);
        scratch.Harvest(ref runs);
        System.Buffers.ArrayPool<DirtyRun>.Shared.Return(runs.Runs);
    }

    /// <summary>Stops every tracker, trying them all even when some fail.</summary>
    /// <exception cref="AggregateException">Some trackers could not stop; each is named.</exception>
    public void StopTracking()
    {
        lock (_lifecycle)
        {
            StopAll();
        }
    }

    /// <summary>
    /// Removes a tracker: it is never read again, and nothing it logged is lost. If it can still be read (started,
    /// not disposed, its worker idle), one last clearing read hands its pages to the shared bitmap; otherwise its
    /// coverage is marked dirty there. The tracker is neither stopped nor disposed: it is the caller's again.
    /// </summary>
    /// <param name="tracker">The tracker.</param>
    /// <returns>Whether it was there to remove.</returns>
    /// <exception cref="ObjectDisposedException">The harvester was disposed.</exception>
    /// <remarks>Waits for a round in progress. A worker still busy with a late read finishes it in the background.</remarks>
    public bool Remove(IDirtyTracker tracker)
    {
        ArgumentNullException.ThrowIfNull(tracker);
        lock (_lifecycle)
        {
            lock (_round)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                HarvestWorker? worker;
                lock (_workers)
                {
                    worker = _workers.Find(w => ReferenceEquals(w.Tracker, tracker));
                    if (worker is null)
                    {
                        return false;
                    }

                    _workers.Remove(worker);
                }

                worker.HandOver();
                worker.Stop(wait: false);
                return true;
            }
        }
    }

    /// <summary>Runs one round: reads every tracker at once, then takes the dirty set from the shared bitmap.</summary>
    /// <param name="deadline">
    /// How long the trackers may take (stop-copy); <see langword="null"/> to wait for all. Zero or negative (a budget
    /// already spent; <see cref="Timeout.InfiniteTimeSpan"/> too) means the deadline is past: the round takes what is
    /// ready and treats every tracker still reading as late.
    /// </param>
    /// <param name="cancellationToken">Cancels the wait; reads in progress still land in the shared bitmap.</param>
    /// <returns>The round: commit it once its pages are sent, put it back if sending failed.</returns>
    /// <exception cref="HarvestException">A tracker under <see cref="TrackerFaultPolicy.FailRound"/> failed or was late.</exception>
    /// <exception cref="OperationCanceledException">The wait was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The harvester was disposed.</exception>
    public HarvestRound RunRound(TimeSpan? deadline, CancellationToken cancellationToken) => RunRoundCore(deadline, final: false, cancellationToken);

    /// <summary>
    /// Runs the stop-copy round, with the guest and its devices paused: as <see cref="RunRound"/>, but each tracker that
    /// can read without clearing does (KVM in manual-protect mode skips <c>KVM_CLEAR_DIRTY_LOG</c>, the IOMMU its
    /// clear), so the round pays for no re-protection the stopped guest no longer needs; and it attributes nothing
    /// (each tracker reads straight into the shared bitmap: one pass less inside the downtime). The pages stay logged
    /// in those trackers: a later round reads them again (over-reporting, never loss) should the guest resume here.
    /// </summary>
    /// <param name="deadline">How long the trackers may take; see <see cref="RunRound"/>.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The round.</returns>
    /// <exception cref="HarvestException">A tracker under <see cref="TrackerFaultPolicy.FailRound"/> failed or was late.</exception>
    /// <exception cref="OperationCanceledException">The wait was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The harvester was disposed.</exception>
    public HarvestRound RunFinalRound(TimeSpan? deadline, CancellationToken cancellationToken) => RunRoundCore(deadline, final: true, cancellationToken);

    private HarvestRound RunRoundCore(TimeSpan? deadline, bool final, CancellationToken cancellationToken)
    {
        lock (_round)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            cancellationToken.ThrowIfCancellationRequested();
            long number = Interlocked.Read(ref _rounds) + 1;
            using Activity? activity = DirtyLogTelemetry.Source.StartActivity(DirtyLogTelemetry.RoundActivity);
            activity?.SetTag("dirtylog.round", number);
            long start = Stopwatch.GetTimestamp();
            if (_warmUp is { } warmUp)
            {
                // The reads StartTracking began are this round's to wait for, not late ones.
                _warmUp = null;
                warmUp.Done.Wait(WaitMilliseconds(deadline), cancellationToken);
            }

            HarvestWorker[] workers = Snapshot();

            // Workers still busy with an earlier round are late for this one; the others go together. Only this
            // (serialised) method makes a worker busy, so one seen idle here is still idle when dispatched.
            bool[] dispatched = workers.Select(w => !w.IsBusy).ToArray();
            var latch = new RoundLatch(dispatched.Count(d => d));
            for (int i = 0; i < workers.Length; i++)
            {
                if (dispatched[i] && !workers[i].TryDispatch(latch, final, Options.ClearBeforeSend))
                {
                    throw new InvalidOperationException($"The worker of {workers[i].Tracker.Name} became busy outside a round.");
                }
            }

            try
            {
                latch.Done.Wait(WaitMilliseconds(deadline), cancellationToken);
            }
            catch (OperationCanceledException)
            {
                activity?.SetStatus(ActivityStatusCode.Error, "cancelled");
                throw;
            }

            TrackerRoundReport[] reports = Collect(workers, dispatched, Stopwatch.GetElapsedTime(start), out HarvestException? failure);
            if (failure is not null)
            {
                activity?.SetStatus(ActivityStatusCode.Error, failure.Message);
                throw failure;
            }

            var sink = new PooledRunSink(Math.Max(256, _lastRunCount));
            Shared.Harvest(ref sink);
            _lastRunCount = sink.Count;
            ulong several = Options.Attribution && !final ? Attribute(workers, reports) : 0;
            TimeSpan duration = Stopwatch.GetElapsedTime(start);
            Interlocked.Increment(ref _rounds);
            DirtyLogTelemetry.RoundCount.Add(1);
            DirtyLogTelemetry.RoundSeconds.Record(duration.TotalSeconds);
            DirtyLogTelemetry.RoundPages.Add((long)sink.Pages);
            activity?.SetTag("dirtylog.pages", sink.Pages);
            activity?.SetTag("dirtylog.trackers", workers.Length);
            IClearBeforeSend[] deferred = [.. workers.Where((w, i) => dispatched[i] && w.DefersClear && reports[i].Outcome == TrackerRoundOutcome.Read).Select(w => (IClearBeforeSend)w.Tracker)];
            return new HarvestRound(number, sink.Runs, sink.Count, sink.Pages, duration, reports, several, Shared) { Deferred = deferred };
        }
    }

    /// <summary>Stops every tracker (trying all, even after failures) and the workers. Never throws.</summary>
    /// <remarks>Waits for a round in progress and for a start racing it: when it returns, no tracker is left started.</remarks>
    public void Dispose()
    {
        lock (_lifecycle)
        {
            lock (_round)
            {
                if (_disposed)
                {
                    return;
                }

                _disposed = true;
            }

            try
            {
                StopAll();
            }
            catch (AggregateException)
            {
                // Each tracker that could not stop is faulted and says so; disposal goes on.
            }

            lock (_workers)
            {
                foreach (HarvestWorker worker in _workers)
                {
                    worker.Stop(wait: true);
                }

                _workers.Clear();
            }
        }
    }

    /// <summary>
    /// As <see cref="Dispose"/>, without blocking a thread on a read in flight: the workers are told to end, their
    /// ends are awaited, and only then are the trackers stopped (so no stop waits behind a read).
    /// </summary>
    /// <returns>A task that completes when every worker has ended and every tracker is stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        HarvestWorker[] workers;
        lock (_lifecycle)
        {
            lock (_round)
            {
                if (_disposed)
                {
                    return;
                }

                _disposed = true;
            }

            lock (_workers)
            {
                workers = [.. _workers];
                _workers.Clear();
            }

            foreach (HarvestWorker worker in workers)
            {
                worker.Stop(wait: false);
            }
        }

        await Task.WhenAll(workers.Select(w => w.Exited)).ConfigureAwait(false);
        lock (_lifecycle)
        {
            try
            {
                StopAll(workers);
            }
            catch (AggregateException)
            {
                // Each tracker that could not stop is faulted and says so; disposal goes on.
            }
        }
    }

    private void AddWorker(IDirtyTracker tracker, IoAddressSpace? space, TrackerFaultPolicy policy)
    {
        lock (_lifecycle)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            lock (_workers)
            {
                if (_workers.Any(w => ReferenceEquals(w.Tracker, tracker)))
                {
                    throw new ArgumentException($"{tracker.Name} was added already.", nameof(tracker));
                }

                _workers.Add(new HarvestWorker(tracker, space, policy, Shared, Options.Attribution));
            }
        }
    }

    private HarvestWorker[] Snapshot()
    {
        lock (_workers)
        {
            return [.. _workers];
        }
    }

    private void StopAll() => StopAll(Snapshot());

    private static void StopAll(HarvestWorker[] workers)
    {
        List<Exception>? failures = null;
        foreach (HarvestWorker worker in workers)
        {
            try
            {
                worker.Tracker.StopTracking();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                (failures ??= []).Add(e);
            }
        }

        if (failures is not null)
        {
            throw new AggregateException("Some trackers could not stop.", failures);
        }
    }

    /// <summary>The latch wait for a deadline: infinite for none, zero for one already past.</summary>
    private static int WaitMilliseconds(TimeSpan? deadline) => deadline switch
    {
        null => Timeout.Infinite,
        { } d when d <= TimeSpan.Zero => 0,
        { } d => (int)Math.Min(int.MaxValue - 1, Math.Ceiling(d.TotalMilliseconds)),
    };

    /// <summary>Outcomes per tracker; the fault policy for the failed and the late.</summary>
    private static TrackerRoundReport[] Collect(HarvestWorker[] workers, bool[] dispatched, TimeSpan waited, out HarvestException? failure)
    {
        failure = null;
        var reports = new TrackerRoundReport[workers.Length];
        for (int i = 0; i < workers.Length; i++)
        {
            HarvestWorker w = workers[i];
            var tag = new KeyValuePair<string, object?>("dirtylog.tracker", w.Tracker.Name);
            bool late = !dispatched[i] || w.IsBusy;
            Exception? fault = late ? null : w.Fault;
            if (!late && fault is null)
            {
                reports[i] = new TrackerRoundReport(w.Tracker.Name, TrackerRoundOutcome.Read, w.Latency, w.Pages, 0, null);
                DirtyLogTelemetry.ReadDuration.Record(w.Latency.TotalSeconds, tag);
                DirtyLogTelemetry.DirtyPages.Add((long)w.Pages, tag);
                continue;
            }

            TrackerRoundOutcome outcome = late ? TrackerRoundOutcome.Late : TrackerRoundOutcome.Faulted;
            DirtyLogTelemetry.Faults.Add(1, tag, new KeyValuePair<string, object?>("dirtylog.outcome", late ? "late" : "faulted"));
            string cause = late ? $"missed the round's deadline ({waited.TotalMilliseconds:F1} ms)"
                : fault is ObjectDisposedException ? $"read failed: the tracker was disposed (remove it from the harvester): {fault.Message}"
                : $"read failed: {fault!.Message}";
            if (!late)
            {
                Restart(w.Tracker);
            }

            // Under either policy the tracker's coverage is marked (after a restart, so that it covers every write
            // the fresh epoch did not log): a caller that goes on after a failed round loses nothing.
            w.MarkCoverage();
            if (w.Policy == TrackerFaultPolicy.FailRound)
            {
                failure ??= new HarvestException(w.Tracker.Name, cause, fault);
            }

            reports[i] = new TrackerRoundReport(w.Tracker.Name, outcome, late ? waited : w.Latency, 0, 0, fault);
        }

        return reports;
    }

    /// <summary>A faulted tracker is stopped and started again (a clean epoch); if that fails it stays faulted and the next round tries again.</summary>
    private static void Restart(IDirtyTracker tracker)
    {
        if (tracker.State != DirtyTrackerState.Faulted)
        {
            return;
        }

        try
        {
            tracker.StopTracking();
            tracker.StartTracking();
        }
        catch (DirtyTrackerException)
        {
            // Still faulted: its coverage is marked every round until it recovers.
        }
    }

    /// <summary>Pages only one tracker reported, per tracker, and pages several did (see <see cref="RoundAttribution"/>).</summary>
    private static ulong Attribute(HarvestWorker[] workers, TrackerRoundReport[] reports)
    {
        var runs = new IReadOnlyList<DirtyRun>?[workers.Length];
        for (int i = 0; i < workers.Length; i++)
        {
            runs[i] = reports[i].Outcome == TrackerRoundOutcome.Read ? workers[i].Runs : null;
        }

        var exclusive = new ulong[workers.Length];
        ulong several = RoundAttribution.Compute(runs, exclusive);
        for (int i = 0; i < reports.Length; i++)
        {
            if (exclusive[i] != 0)
            {
                reports[i] = reports[i] with { ExclusivePages = exclusive[i] };
            }
        }

        return several;
    }
}
