// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Harvesting;
using DirtyLog.Migration;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>The controller fed by real harvest rounds over emulated trackers whose dirty rates are scripted.</summary>
[TestFixture]
public class PreCopyLoopTests
{
    private const ulong MiB = 1UL << 20;

    [Test]
    public void AGuestWhoseWritersSlowDownIsSwitchedOverAtTheRoundTheRestFits()
    {
        // Per round the vCPUs write 8,000 then half as many pages each round, the NIC a steady 100; the "link" sends
        // 40 MB/s (a 300 ms downtime fits 2,929 pages). Expected: 8,100 / 4,100 / 2,100 -> stop-copy at round 3.
        using var shared = new SparseDirtyBitmap(40);
        using var vcpus = new EmulatedTracker("vcpus", new AddressRange(0, 256 * MiB));
        using var nic = new EmulatedTracker("nic", new AddressRange(256 * MiB, 64 * MiB));
        using var harvester = new ParallelHarvester(shared);
        harvester.Add(vcpus, TrackerFaultPolicy.FailRound);
        harvester.Add(nic, TrackerFaultPolicy.MarkCoverageDirty);
        harvester.StartTracking();
        var controller = new PreCopyController();
        ulong vcpuPages = 8_000, nicOffset = 0;
        PreCopyDecision decision;
        do
        {
            vcpus.WriteRange(0, vcpuPages * 4096);
            nic.WriteRange((256 * MiB) + (nicOffset++ % 100 * 100 * 4096), 100 * 4096);
            vcpuPages /= 2;

            using HarvestRound round = harvester.RunRound(null, CancellationToken.None);
            ulong bytes = round.Pages * 4096;
            decision = controller.Observe(new RoundObservation(
                round.Pages,
                bytes,
                TimeSpan.FromSeconds(bytes / 40e6),
                TimeSpan.FromSeconds(1),
                round.Trackers.ToDictionary(t => t.Tracker, t => t.PagesReported)));
            round.Commit();
        }
        while (decision.Action == PreCopyAction.Continue);

        Assert.Multiple(() =>
        {
            Assert.That(decision.Action, Is.EqualTo(PreCopyAction.StopCopy));
            Assert.That(decision.Round, Is.EqualTo(3));
            Assert.That(controller.History.Select(d => (ulong)(d.DirtyRate + 0.5)), Is.EqualTo(new ulong[] { 8_100, 4_100, 2_100 }));
            Assert.That(controller.TrackerRates["nic"], Is.EqualTo(100).Within(0.5));
        });
    }
}
