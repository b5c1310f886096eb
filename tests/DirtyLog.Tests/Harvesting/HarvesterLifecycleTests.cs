// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Harvesting;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Harvesting;

/// <summary>
/// The harvester's life cycle at its edges: deadlines already past, start racing dispose, faulted trackers, trackers
/// removed or disposed under it, rounds outliving the shared bitmap.
/// </summary>
[TestFixture]
public class HarvesterLifecycleTests
{
    private const ulong MiB = 1UL << 20;

    private readonly List<IDisposable> _owned = [];

    [TearDown]
    public void DisposeOwned()
    {
        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            _owned[i].Dispose();
        }

        _owned.Clear();
    }

    private T Own<T>(T disposable)
        where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    private EmulatedTracker Tracker(string name, ulong start, ulong length) => Own(new EmulatedTracker(name, new AddressRange(start, length)));

    [Test]
    public void ADeadlineAlreadyPastReadsWhatIsReadyAndTreatsTheRestAsLate()
    {
        SparseDirtyBitmap shared = Own(new SparseDirtyBitmap(40));
        EmulatedTracker slow = Tracker("slow", 0, 64 * MiB);
        ParallelHarvester harvester = Own(new ParallelHarvester(shared));
        harvester.Add(slow, TrackerFaultPolicy.MarkCoverageDirty);
        harvester.StartTracking();
        slow.Write(4096);
        slow.Reports.Hold(); // a read that never ends until the test says so: the round must not wait for it

        HarvestRound round;
        try
        {
            Task<HarvestRound> pending = Task.Run(() => harvester.RunRound(TimeSpan.FromMilliseconds(-5), CancellationToken.None));
            Assert.That(pending.Wait(TimeSpan.FromSeconds(30)), Is.True, "a negative deadline waited for the held tracker");
            round = pending.Result;
        }
        finally
        {
            slow.Reports.Release();
        }

        using (round)
        {
            Assert.Multiple(() =>
            {
                Assert.That(round.Trackers.Single().Outcome, Is.EqualTo(TrackerRoundOutcome.Late));
                Assert.That(round.Pages, Is.EqualTo(64 * MiB / 4096), "the late tracker's coverage is in the round: nothing lost");
            });
            round.Commit();
        }
    }

    [Test]
    public void AStartParkedInsideATrackerWhenDisposeComesNeverLeavesItStartedAfterDisposeReturned()
    {
        SparseDirtyBitmap shared = Own(new SparseDirtyBitmap(40));
        var gated = new GatedStartTracker(Tracker("gated", 0, 64 * MiB));
        var harvester = new ParallelHarvester(shared);
        harvester.Add(Tracker("plain", 64 * MiB, 64 * MiB), TrackerFaultPolicy.FailRound);
        harvester.Add(gated, TrackerFaultPolicy.FailRound);

        ObjectDisposedException? startFailure = null;
        var starter = new Thread(() => startFailure = Catch(harvester.StartTracking)) { IsBackground = true };
        starter.Start();
        Assert.That(gated.Parked.Wait(TimeSpan.FromSeconds(10)), Is.True, "the start never reached the gated tracker");

        // Dispose either returns while the start is parked, or waits for it; both are allowed, a started tracker after it is not.
        var disposer = new Thread(harvester.Dispose) { IsBackground = true };
        disposer.Start();
        ThreadStates.WaitUntilBlocked(disposer, mayEnd: true, "the disposal");
        gated.Release.Set();
        Assert.That(starter.Join(TimeSpan.FromSeconds(10)) && disposer.Join(TimeSpan.FromSeconds(10)), Is.True, "the start and the disposal deadlocked");

        Assert.That(harvester.Trackers, Is.Empty);
        Assert.That(gated.State, Is.EqualTo(DirtyTrackerState.Stopped), $"a tracker is running after Dispose returned (the start ended with {startFailure?.GetType().Name ?? "success"})");
    }

    /// <summary>Runs <paramref name="action"/>; a start after disposal is refused with <see cref="ObjectDisposedException"/>, as documented.</summary>
    private static ObjectDisposedException? Catch(Action action)
    {
        try
        {
            action();
            return null;
        }
        catch (ObjectDisposedException e)
        {
            return e;
        }
    }

    [Test]
    public void StartTrackingRestartsAFaultedTrackerAndMarksItsCoverage()
    {
        SparseDirtyBitmap shared = Own(new SparseDirtyBitmap(40));
        EmulatedTracker tracker = Tracker("faulty", 0, 4 * MiB);
        tracker.StartTracking();
        tracker.FailNextReads();
        Assert.Throws<DirtyTrackerException>(() => tracker.ReadDirty(new AddressRange(0, 4 * MiB), shared, DirtyReadMode.Clear));
        Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Faulted));
        ParallelHarvester harvester = Own(new ParallelHarvester(shared));
        harvester.Add(tracker, TrackerFaultPolicy.FailRound);

        harvester.StartTracking();

        Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Started));
        using HarvestRound round = harvester.RunRound(null, CancellationToken.None);
        Assert.That(round.Pages, Is.EqualTo(4 * MiB / 4096), "what the faulted tracker had logged is unknown: its coverage is dirty");
        round.Commit();
    }

    [Test]
    public void ARemovedTrackerHandsOverWhatItLoggedAndIsNeverReadAgain()
    {
        SparseDirtyBitmap shared = Own(new SparseDirtyBitmap(40));
        EmulatedTracker stays = Tracker("stays", 0, 64 * MiB);
        EmulatedTracker leaves = Tracker("leaves", 64 * MiB, 64 * MiB);
        ParallelHarvester harvester = Own(new ParallelHarvester(shared));
        harvester.Add(stays, TrackerFaultPolicy.FailRound);
        harvester.Add(leaves, TrackerFaultPolicy.FailRound);
        harvester.StartTracking();
        leaves.Write(64 * MiB + 3 * 4096);

        Assert.That(harvester.Remove(leaves), Is.True);
        Assert.That(harvester.Remove(leaves), Is.False, "removing twice does nothing");
        leaves.Dispose();

        using HarvestRound round = harvester.RunRound(null, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(round.Runs.ToArray(), Is.EqualTo(new[] { new DirtyRun((64 * MiB / 4096) + 3, 1) }), "its last writes were read on removal");
            Assert.That(round.Trackers.Select(t => t.Tracker), Is.EqualTo(new[] { "stays" }));
            Assert.That(harvester.Trackers, Is.EqualTo(new IDirtyTracker[] { stays }));
        });
        round.Commit();
    }

    [Test]
    public void ATrackerDisposedUnderTheHarvesterCanBeRemovedWithItsCoverageMarked()
    {
        SparseDirtyBitmap shared = Own(new SparseDirtyBitmap(40));
        EmulatedTracker stays = Tracker("stays", 0, 64 * MiB);
        EmulatedTracker gone = Tracker("gone", 64 * MiB, 4 * MiB);
        ParallelHarvester harvester = Own(new ParallelHarvester(shared));
        harvester.Add(stays, TrackerFaultPolicy.FailRound);
        harvester.Add(gone, TrackerFaultPolicy.FailRound);
        harvester.StartTracking();
        gone.Write(64 * MiB);
        gone.Dispose();
        Assert.Throws<HarvestException>(() => harvester.RunRound(null, CancellationToken.None).Dispose());
        shared.HarvestRuns(); // the failed round marked its coverage; start from a clean bitmap

        Assert.That(harvester.Remove(gone), Is.True);
        using HarvestRound round = harvester.RunRound(null, CancellationToken.None);
        Assert.That(round.Pages, Is.EqualTo(4 * MiB / 4096), "a tracker that cannot be read on removal has its coverage marked");
        round.Commit();
        using HarvestRound next = harvester.RunRound(null, CancellationToken.None);
        Assert.That(next.Pages, Is.Zero);
        next.Commit();
    }

    [Test]
    public void DisposingAnUncommittedRoundAfterTheSharedBitmapDoesNotThrow()
    {
        var shared = new SparseDirtyBitmap(40);
        EmulatedTracker tracker = Tracker("t", 0, 4 * MiB);
        var harvester = new ParallelHarvester(shared);
        harvester.Add(tracker, TrackerFaultPolicy.FailRound);
        harvester.StartTracking();
        tracker.Write(0);
        HarvestRound round = harvester.RunRound(null, CancellationToken.None);
        harvester.Dispose();
        shared.Dispose();

        Assert.DoesNotThrow(round.Dispose);
        Assert.That(round.IsCommitted, Is.False);
    }

    /// <summary>A tracker whose next start parks until the test releases it: a start caught half-way.</summary>
    [Test]
    public async Task DisposeAsyncAwaitsAReadInFlightAndStopsNoTrackerUntilEveryWorkerEnded()
    {
        SparseDirtyBitmap shared = Own(new SparseDirtyBitmap(40));
        EmulatedTracker held = Tracker("held", 0, 64 * MiB);
        EmulatedTracker free = Tracker("free", 64 * MiB, 64 * MiB);
        var harvester = new ParallelHarvester(shared);
        harvester.Add(held, TrackerFaultPolicy.MarkCoverageDirty);
        harvester.Add(free, TrackerFaultPolicy.MarkCoverageDirty);
        harvester.StartTracking();
        held.Reports.Hold();
        ValueTask disposal;
        try
        {
            using (HarvestRound round = harvester.RunRound(TimeSpan.Zero, CancellationToken.None))
            {
                round.Commit(); // the held tracker is late: its read goes on after the round
            }

            Assert.That(held.Reports.WaitForHeld(1, TimeSpan.FromSeconds(30)), Is.True, "the late read is in flight");
            disposal = harvester.DisposeAsync();
            Assert.Multiple(() =>
            {
                // Returned at once on this thread; no thread was given the wait (with Task.Run(Dispose) a pool thread
                // would now be blocked stopping the trackers, the free one already stopped).
                Assert.That(disposal.IsCompleted, Is.False, "a read is still in flight");
                Assert.That(free.State, Is.EqualTo(DirtyTrackerState.Started), "no tracker is stopped while a worker still reads");
                Assert.That(held.State, Is.EqualTo(DirtyTrackerState.Started));
            });
        }
        finally
        {
            held.Reports.Release();
        }

        Task ended = disposal.AsTask();
        Assert.That(await Task.WhenAny(ended, Task.Delay(TimeSpan.FromSeconds(30))), Is.SameAs(ended), "the disposal ends once the read did");
        Assert.Multiple(() =>
        {
            Assert.That(held.State, Is.EqualTo(DirtyTrackerState.Stopped));
            Assert.That(free.State, Is.EqualTo(DirtyTrackerState.Stopped));
            Assert.That(() => harvester.StartTracking(), Throws.InstanceOf<ObjectDisposedException>());
        });
    }

    private sealed class GatedStartTracker(EmulatedTracker inner) : IDirtyTracker
    {
        private int _parked;

        public ManualResetEventSlim Parked { get; } = new();

        public ManualResetEventSlim Release { get; } = new();

        public string Name => inner.Name;

        public DirtyAddressSpace AddressSpace => inner.AddressSpace;

        public long PageSize => inner.PageSize;

        public IReadOnlyList<AddressRange> Coverage => inner.Coverage;

        public bool CanReadWithoutClear => inner.CanReadWithoutClear;

        public DirtyTrackerState State => inner.State;

        public void StartTracking()
        {
            if (Interlocked.Exchange(ref _parked, 1) == 0)
            {
                Parked.Set();
                Release.Wait();
            }

            inner.StartTracking();
        }

        public void StopTracking() => inner.StopTracking();

        public ulong ReadDirty(AddressRange range, SparseDirtyBitmap target, DirtyReadMode mode) => inner.ReadDirty(range, target, mode);

        public ulong ReadDirty(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode) => inner.ReadDirty(range, sink, mode);

        public void Dispose() => inner.Dispose();
    }
}
