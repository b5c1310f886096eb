// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Harvesting;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Harvesting;

/// <summary>The parallel harvester with emulated trackers: latency, fault policies, transactions, cancellation, telemetry.</summary>
[TestFixture]
public class ParallelHarvesterTests
{
    private const ulong MiB = 1UL << 20;

    private SparseDirtyBitmap _shared = null!;

    [SetUp]
    public void CreateShared() => _shared = new SparseDirtyBitmap(40);

    private readonly List<EmulatedTracker> _trackers = [];

    [TearDown]
    public void DisposeSharedAndTrackers()
    {
        foreach (EmulatedTracker t in _trackers)
        {
            t.Dispose();
        }

        _trackers.Clear();
        _shared.Dispose();
    }

    private EmulatedTracker Tracker(string name, ulong start, ulong length)
    {
        var tracker = new EmulatedTracker(name, new AddressRange(start, length));
        _trackers.Add(tracker);
        return tracker;
    }

    /// <summary>A harvester over the given trackers, started.</summary>
    private ParallelHarvester Started(params (IDirtyTracker Tracker, TrackerFaultPolicy Policy)[] trackers)
    {
        var harvester = new ParallelHarvester(_shared);
        foreach ((IDirtyTracker tracker, TrackerFaultPolicy policy) in trackers)
        {
            harvester.Add(tracker, policy);
        }

        harvester.StartTracking();
        return harvester;
    }

    [Test]
    public void ARoundReadsEveryTrackerAtOnceNotOneAfterAnother()
    {
        EmulatedTracker[] trackers = Enumerable.Range(0, 4).Select(i => Tracker($"t{i}", (ulong)i * 64 * MiB, 64 * MiB)).ToArray();
        using var harvester = new ParallelHarvester(_shared);
        foreach (EmulatedTracker t in trackers)
        {
            t.Reports.Hold();
            harvester.Add(t, TrackerFaultPolicy.FailRound);
        }

        harvester.StartTracking();
        Assert.That(trackers[2].Write(2 * 64 * MiB), Is.True);
        Task<HarvestRound> pending = Task.Run(() => harvester.RunRound(null, CancellationToken.None));

        // Every tracker is inside its read at the same time: the round waits for the slowest, not for the sum.
        Assert.That(trackers.All(t => t.Reports.WaitForHeld(1, TimeSpan.FromSeconds(10))), Is.True, "all four reads were in progress together");
        Assert.That(pending.IsCompleted, Is.False, "the round waits for its trackers");
        foreach (EmulatedTracker t in trackers)
        {
            t.Reports.Release();
        }

        using HarvestRound round = pending.Result;
        DirtyRun[] runs = round.Runs.ToArray();
        round.Commit();
        Assert.Multiple(() =>
        {
            Assert.That(round.Trackers.Select(r => r.Outcome), Is.All.EqualTo(TrackerRoundOutcome.Read));
            Assert.That(runs, Is.EqualTo(new[] { new DirtyRun(2 * 64 * MiB / 4096, 1) }));
        });
    }

    [TestCase(TrackerFaultPolicy.MarkCoverageDirty, 1)]
    [TestCase(TrackerFaultPolicy.MarkCoverageDirty, 2)]
    [TestCase(TrackerFaultPolicy.FailRound, 3)]
    [TestCase(TrackerFaultPolicy.FailRound, 4)]
    public void NothingWrittenIsLostWhenATrackerFailsUnderEitherPolicy(TrackerFaultPolicy policy, int seed)
    {
        // Three trackers (two overlapping), two writers, a harvester whose consumer fails now and then, and one
        // tracker that fails every third round. Ground truth: every write the writers made.
        EmulatedTracker[] trackers = [Tracker("a", 0, 16 * MiB), Tracker("b", 8 * MiB, 16 * MiB), Tracker("c", 32 * MiB, 16 * MiB)];
        using var harvester = new ParallelHarvester(_shared);
        foreach (EmulatedTracker t in trackers)
        {
            harvester.Add(t, t.Name == "c" ? policy : TrackerFaultPolicy.FailRound);
        }

        harvester.StartTracking();
        const int Rounds = 40;
        var written = new HashSet<ulong>();
        var sent = new HashSet<ulong>();
        int failedRounds = 0, putBacks = 0;

        // Each round, both writers write a batch while the harvester runs the round: writes race the reads.
        using var roundStart = new Barrier(3);
        var writers = Enumerable.Range(0, 2).Select(w => new Thread(() =>
        {
            var random = new Random((seed * 10) + w);
            var mine = new List<ulong>();
            for (int round = 0; round < Rounds; round++)
            {
                roundStart.SignalAndWait();
                for (int i = 0; i < 500; i++)
                {
                    EmulatedTracker t = trackers[random.Next(trackers.Length)];
                    ulong address = t.Coverage[0].Start + ((ulong)random.Next((int)(t.Coverage[0].Length / 4096)) * 4096);
                    t.Write(address);
                    mine.Add(address / 4096);
                }
            }

            lock (written)
            {
                written.UnionWith(mine);
            }
        })).ToArray();
        foreach (Thread w in writers)
        {
            w.Start();
        }

        var consumer = new Random(seed);
        for (int round = 1; round <= Rounds; round++)
        {
            roundStart.SignalAndWait();
            if (round % 3 == 0)
            {
                trackers[2].FailNextReads();
            }

            HarvestRound result;
            try
            {
                result = harvester.RunRound(null, CancellationToken.None);
            }
            catch (HarvestException e)
            {
                Assert.That(policy, Is.EqualTo(TrackerFaultPolicy.FailRound));
                Assert.That(e.Tracker, Is.EqualTo("c"));
                failedRounds++;
                continue;
            }

            using (result)
            {
                if (consumer.Next(4) == 0)
                {
                    putBacks++; // the send failed: disposing uncommitted puts the pages back
                    continue;
                }

                foreach (DirtyRun run in result.Runs)
                {
                    for (ulong p = run.FirstPage; p < run.EndPage; p++)
                    {
                        sent.Add(p);
                    }
                }

                result.Commit();
            }
        }

        foreach (Thread w in writers)
        {
            Assert.That(w.Join(TimeSpan.FromSeconds(30)), Is.True);
        }

        using (HarvestRound last = harvester.RunRound(null, CancellationToken.None))
        {
            foreach (DirtyRun run in last.Runs)
            {
                for (ulong p = run.FirstPage; p < run.EndPage; p++)
                {
                    sent.Add(p);
                }
            }

            last.Commit();
        }

        written.ExceptWith(sent);
        TestContext.Out.WriteLine($"{harvester.Rounds} rounds, {failedRounds} failed, {putBacks} put back, {sent.Count:N0} pages sent");
        Assert.Multiple(() =>
        {
            Assert.That(written, Is.Empty, "pages written and never sent");
            Assert.That(failedRounds, policy == TrackerFaultPolicy.FailRound ? Is.EqualTo(Rounds / 3) : Is.Zero);
            Assert.That(putBacks, Is.GreaterThan(0));
        });
    }

    [Test]
    public void ALateTrackerIsMarkedDirtyAndItsReadLandsInALaterRound()
    {
        EmulatedTracker fast = Tracker("fast", 0, 4 * MiB), slow = Tracker("slow", 4 * MiB, 4 * MiB);
        using ParallelHarvester harvester = Started((fast, TrackerFaultPolicy.FailRound), (slow, TrackerFaultPolicy.MarkCoverageDirty));
        slow.Reports.Hold();
        fast.Write(4096);
        slow.Write(4 * MiB);
        try
        {
            using HarvestRound round = harvester.RunRound(TimeSpan.FromMilliseconds(50), CancellationToken.None);
            Assert.Multiple(() =>
            {
                Assert.That(slow.Reports.HeldCount, Is.EqualTo(1), "the round returned while the slow read was still held");
                Assert.That(round.Trackers[1].Outcome, Is.EqualTo(TrackerRoundOutcome.Late));
                Assert.That(round.Pages, Is.EqualTo(1 + 1024UL), "the fast tracker's page and the slow tracker's whole coverage");
            });
            round.Commit();

            // Still reading: late again, marked again; then its read lands, and it is on time once more.
            using HarvestRound again = harvester.RunRound(TimeSpan.FromMilliseconds(50), CancellationToken.None);
            Assert.That(again.Trackers[1].Outcome, Is.EqualTo(TrackerRoundOutcome.Late));
            again.Commit();
        }
        finally
        {
            slow.Reports.Release(); // a held read holds the tracker's lock: nothing could stop it
        }

        SpinWait.SpinUntil(() => harvester.RunRound(TimeSpan.FromSeconds(5), CancellationToken.None) is { } r && Settle(r) == TrackerRoundOutcome.Read, TimeSpan.FromSeconds(10));
        slow.Write(5 * MiB);
        using HarvestRound after = harvester.RunRound(TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.That(after.Runs.ToArray(), Is.EqualTo(new[] { new DirtyRun(5 * MiB / 4096, 1) }));
    }

    [Test]
    public void UnderFailRoundALateTrackerFailsTheRoundByName()
    {
        EmulatedTracker slow = Tracker("slow", 0, 4 * MiB);
        using ParallelHarvester harvester = Started((slow, TrackerFaultPolicy.FailRound));
        slow.Reports.Hold();
        try
        {
            Assert.That(() => harvester.RunRound(TimeSpan.FromMilliseconds(30), CancellationToken.None),
                Throws.TypeOf<HarvestException>().With.Property(nameof(HarvestException.Tracker)).EqualTo("slow").And.Message.Contains("deadline"));
        }
        finally
        {
            slow.Reports.Release();
        }
    }

    [Test]
    public void CancellingARoundLeavesTheReadToLandLater()
    {
        EmulatedTracker slow = Tracker("slow", 0, 4 * MiB);
        using ParallelHarvester harvester = Started((slow, TrackerFaultPolicy.FailRound));
        slow.Write(8192);
        slow.Reports.Hold();
        using var cancel = new CancellationTokenSource();
        Task<HarvestRound> pending = Task.Run(() => harvester.RunRound(null, cancel.Token));
        Assert.That(slow.Reports.WaitForHeld(1, TimeSpan.FromSeconds(10)), Is.True);
        cancel.Cancel();
        Assert.That(() => pending.GetAwaiter().GetResult(), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(_shared.Count(), Is.Zero, "the read is still held");
        slow.Reports.Release();
        Assert.That(SpinWait.SpinUntil(() => _shared.Count() == 1, TimeSpan.FromSeconds(5)), Is.True, "the cancelled read still merged its page");
    }

    [Test]
    public void AttributionSaysWhichTrackerSawWhat()
    {
        EmulatedTracker a = Tracker("a", 0, 8 * MiB), b = Tracker("b", 4 * MiB, 8 * MiB);
        using ParallelHarvester harvester = Started((a, TrackerFaultPolicy.FailRound), (b, TrackerFaultPolicy.FailRound));
        a.WriteRange(0, 10 * 4096);            // 10 pages only a sees
        a.WriteRange(4 * MiB, 3 * 4096);        // 3 pages both see
        b.WriteRange(4 * MiB, 3 * 4096);
        b.WriteRange(10 * MiB, 5 * 4096);       // 5 pages only b sees
        using HarvestRound round = harvester.RunRound(null, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(round.Pages, Is.EqualTo(18UL));
            Assert.That(round.PagesSeenBySeveral, Is.EqualTo(3UL));
            Assert.That(round.Trackers.Select(t => (t.Tracker, t.PagesReported, t.ExclusivePages)), Is.EqualTo(new[] { ("a", 13UL, 10UL), ("b", 8UL, 5UL) }));
        });
    }

    [Test]
    public void APutBackRoundComesBackAndACommittedOneCannotBePutBack()
    {
        EmulatedTracker a = Tracker("a", 0, 8 * MiB);
        using ParallelHarvester harvester = Started((a, TrackerFaultPolicy.FailRound));
        a.WriteRange(0, 4 * 4096);
        HarvestRound first = harvester.RunRound(null, CancellationToken.None);
        first.PutBack();
        first.PutBack(); // repeating it does nothing
        Assert.That(() => first.Commit(), Throws.InvalidOperationException);
        using HarvestRound second = harvester.RunRound(null, CancellationToken.None);
        Assert.That(second.Pages, Is.EqualTo(4UL));
        second.Commit();
        Assert.That(() => second.PutBack(), Throws.InvalidOperationException);
        using HarvestRound third = harvester.RunRound(null, CancellationToken.None);
        Assert.That(third.Pages, Is.Zero);
    }

    [Test]
    public async Task DisposingStopsEveryTrackerEvenWhenOneCannotStop()
    {
        EmulatedTracker a = Tracker("a", 0, 8 * MiB), c = Tracker("c", 16 * MiB, 8 * MiB);
        var stuck = new StopFailsTracker();
        var harvester = new ParallelHarvester(_shared);
        harvester.Add(a, TrackerFaultPolicy.FailRound);
        harvester.Add(stuck, TrackerFaultPolicy.FailRound);
        harvester.Add(c, TrackerFaultPolicy.FailRound);
        harvester.StartTracking();
        await harvester.DisposeAsync();
        Assert.Multiple(() =>
        {
            Assert.That(a.State, Is.EqualTo(DirtyTrackerState.Stopped));
            Assert.That(c.State, Is.EqualTo(DirtyTrackerState.Stopped), "the tracker after the one that failed to stop");
            Assert.That(stuck.State, Is.EqualTo(DirtyTrackerState.Faulted));
            Assert.That(() => harvester.RunRound(null, CancellationToken.None), Throws.TypeOf<ObjectDisposedException>());
        });
    }

    [Test]
    public void AStartThatFailsStopsWhatItStarted()
    {
        EmulatedTracker a = Tracker("a", 0, 8 * MiB);
        var broken = new StopFailsTracker { FailStart = true };
        using var harvester = new ParallelHarvester(_shared);
        harvester.Add(a, TrackerFaultPolicy.FailRound);
        harvester.Add(broken, TrackerFaultPolicy.FailRound);
        Assert.That(harvester.StartTracking, Throws.TypeOf<DirtyTrackerException>());
        Assert.That(a.State, Is.EqualTo(DirtyTrackerState.Stopped));
    }

    [Test]
    public void RoundsAreMeasuredAndTraced()
    {
        var measurements = new List<(string Name, double Value, string? Tracker)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == DirtyLogTelemetry.Name)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Record(i.Name, v, tags));
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Record(i.Name, v, tags));
        listener.Start();
        var activities = new List<Activity>();
        using var activityListener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == DirtyLogTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activities.Add,
        };
        ActivitySource.AddActivityListener(activityListener);

        EmulatedTracker a = Tracker("metered", 0, 8 * MiB);
        using ParallelHarvester harvester = Started((a, TrackerFaultPolicy.FailRound));
        a.WriteRange(0, 7 * 4096);
        harvester.RunRound(null, CancellationToken.None).Commit();

        lock (measurements)
        {
            Assert.Multiple(() =>
            {
                Assert.That(measurements, Has.Some.Matches<(string Name, double Value, string? Tracker)>(m => m.Name == DirtyLogTelemetry.TrackerDirtyPages && m.Value == 7 && m.Tracker == "metered"));
                Assert.That(measurements, Has.Some.Matches<(string Name, double Value, string? Tracker)>(m => m.Name == DirtyLogTelemetry.TrackerReadDuration && m.Tracker == "metered"));
                Assert.That(measurements, Has.Some.Matches<(string Name, double Value, string? Tracker)>(m => m.Name == DirtyLogTelemetry.Rounds));
                Assert.That(activities, Has.Some.Matches<Activity>(x => x.OperationName == DirtyLogTelemetry.RoundActivity && (ulong?)x.GetTagItem("dirtylog.pages") == 7));
            });
        }

        void Record(string name, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string? tracker = null;
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                if (tag.Key == "dirtylog.tracker")
                {
                    tracker = (string?)tag.Value;
                }
            }

            lock (measurements)
            {
                measurements.Add((name, value, tracker));
            }
        }
    }

    private static TrackerRoundOutcome Settle(HarvestRound round)
    {
        round.Commit();
        round.Dispose();
        return round.Trackers[1].Outcome;
    }

    /// <summary>A tracker whose stop (or start) always fails, to prove the others are stopped anyway.</summary>
    private sealed class StopFailsTracker() : DirtyTrackerBase("stuck", DirtyAddressSpace.GuestPhysical, 4096)
    {
        public bool FailStart { get; init; }

        public override IReadOnlyList<AddressRange> Coverage => [new AddressRange(64 * MiB, 4096)];

        public override bool CanReadWithoutClear => false;

        protected override void OnStart()
        {
            if (FailStart)
            {
                throw new InvalidOperationException("cannot start");
            }
        }

        protected override void OnStop() => throw new InvalidOperationException("cannot stop");

        protected override ulong ReadCore(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode) => 0;
    }
}
