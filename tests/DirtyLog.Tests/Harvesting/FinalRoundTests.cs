// Licensed under the MIT License. See LICENSE in the repository root.

using System.Linq;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Harvesting;

/// <summary>
/// The stop-copy round reads without clearing where the tracker can (no re-protection for a stopped guest), so the
/// pages stay logged: should the guest resume on the source, the next round reports them again, never loses them.
/// </summary>
[TestFixture]
[Category("Unit")]
public class FinalRoundTests
{
    private const ulong MiB = 1UL << 20;

    [TestCase(true, true)]
    [TestCase(false, false)]
    public void TheFinalRoundLeavesThePagesLoggedWhereTheTrackerCanReadWithoutClearing(bool manualProtect, bool stillLogged)
    {
        using var vm = new EmulatedKvmVm(16 * MiB, manualProtect: manualProtect);
        vm.AddSlot(0, 0, 16 * MiB);
        using var shared = new SparseDirtyBitmap(40);
        using var tracker = new KvmDirtyLogTracker(vm, "vm");
        using var harvester = new ParallelHarvester(shared);
        harvester.Add(tracker, TrackerFaultPolicy.FailRound);
        harvester.StartTracking();
        vm.Vcpus[0].Run([(3 * MiB) + 8, (5 * MiB) + 8], 1, out _);

        using (HarvestRound final = harvester.RunFinalRound(null, CancellationToken.None))
        {
            Assert.That(final.Runs.ToArray(), Is.EquivalentTo(new[] { new DirtyRun(3 * MiB / 4096, 1), new DirtyRun(5 * MiB / 4096, 1) }));
            final.Commit();
        }

        // The guest resumes here after all (the destination failed): the next round.
        using HarvestRound next = harvester.RunRound(null, CancellationToken.None);
        Assert.That(next.Pages, Is.EqualTo(stillLogged ? 2UL : 0UL),
            stillLogged ? "manual protect: GET only, the pages are still logged and reported again" : "classic GET clears: nothing left");
        next.Commit();
    }
}
