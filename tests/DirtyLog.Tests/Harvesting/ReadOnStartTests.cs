// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Harvesting;

/// <summary>
/// <see cref="HarvesterOptions.ReadOnStart"/>: the read that readies the first round loses nothing, is waited for by
/// the first round rather than counted late, and a failure in it is handled by the first round's policy.
/// </summary>
[TestFixture]
public class ReadOnStartTests
{
    private const ulong MiB = 1UL << 20;

    [Test]
    public void AWriteRacingTheReadOnStartIsInTheFirstRoundAndNoTrackerIsLate()
    {
        using var shared = new SparseDirtyBitmap(40);
        using var early = new EmulatedTracker("early", new AddressRange(0, 64 * MiB));
        using var held = new EmulatedTracker("held", new AddressRange(64 * MiB, 64 * MiB));
        using var harvester = new ParallelHarvester(shared, new HarvesterOptions { ReadOnStart = true });
        harvester.Add(early, TrackerFaultPolicy.FailRound);
        harvester.Add(held, TrackerFaultPolicy.FailRound);
        held.Reports.Hold();

        // StartTracking gives up waiting for the held read after a while; the read is still in progress.
        Task start = Task.Run(harvester.StartTracking);
        Assert.That(held.Reports.WaitForHeld(1, TimeSpan.FromSeconds(10)), Is.True, "the read on start is in progress");
        Assert.That(early.Write(4096), Is.True);
        Assert.That(held.Write((64 * MiB) + 8192), Is.True);
        Assert.That(start.Wait(TimeSpan.FromSeconds(10)), Is.True, "StartTracking does not wait for ever");

        HarvestRound? result = null;
        var first = new Thread(() => result = harvester.RunRound(null, CancellationToken.None));
        first.Start();
        ThreadStates.WaitUntilBlocked(first, mayEnd: false, "the first round, waiting for the read on start");
        held.Reports.Release();
        Assert.That(first.Join(TimeSpan.FromSeconds(10)), Is.True);
        using HarvestRound round = result!;
        DirtyRun[] runs = round.Runs.ToArray();
        round.Commit();
        Assert.Multiple(() =>
        {
            Assert.That(round.Trackers.Select(t => t.Outcome), Is.All.EqualTo(TrackerRoundOutcome.Read), "no tracker is late for it");
            Assert.That(runs, Is.EquivalentTo(new[] { new DirtyRun(1, 1), new DirtyRun((64 * MiB / 4096) + 2, 1) }), "both writes");
        });
    }

    [Test]
    public void AFailureInTheReadOnStartIsTheFirstRoundsToHandleUnderItsPolicy()
    {
        using var shared = new SparseDirtyBitmap(40);
        using var tracker = new EmulatedTracker("failing", new AddressRange(0, 64 * MiB));
        using var harvester = new ParallelHarvester(shared, new HarvesterOptions { ReadOnStart = true });
        harvester.Add(tracker, TrackerFaultPolicy.MarkCoverageDirty);
        tracker.FailNextReads(1);
        harvester.StartTracking();
        Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Faulted), "the read on start failed");

        using HarvestRound round = harvester.RunRound(null, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(round.Trackers[0].Outcome, Is.Not.EqualTo(TrackerRoundOutcome.Read), "the first round met the fault");
            Assert.That(round.Pages, Is.EqualTo(64 * MiB / 4096), "and marked the tracker's coverage, under its policy");
        });
        round.Commit();
    }
}
