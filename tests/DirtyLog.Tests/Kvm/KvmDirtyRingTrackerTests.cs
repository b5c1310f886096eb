// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm;

/// <summary>The dirty ring on the real /dev/kvm, judged like the kernel's dirty_log_test: from the memory contents.</summary>
[TestFixture]
public class KvmDirtyRingTrackerTests : KvmFixture
{
    [SetUp]
    public void RequireARing()
    {
        using var kvm = KvmSystem.Open();
        Assume.That(kvm.CheckExtension(DirtyLog.Native.Linux.Kvm.KvmConstants.KVM_CAP_DIRTY_LOG_RING) > 0
            || kvm.CheckExtension(DirtyLog.Native.Linux.Kvm.KvmConstants.KVM_CAP_DIRTY_LOG_RING_ACQ_REL) > 0, "KVM offers no dirty ring");
    }

    private static (int Missed, long Reported) Check(TinyGuest guest, KvmDirtyRingTracker tracker, SparseDirtyBitmap reported, ulong iteration)
    {
        tracker.ReadDirty(tracker.Coverage[0], reported, DirtyReadMode.Clear);
        var pages = new HashSet<ulong>();
        reported.HarvestInto(pages);
        int missed = 0;
        for (ulong page = 2; page < guest.Pages; page++)
        {
            if (guest.Memory.ReadUInt64(page * 4096) == iteration && !pages.Contains(page))
            {
                missed++;
            }
        }

        return (missed, pages.Count);
    }

    [TestCase(1u)]
    [TestCase(2u)]
    public void EveryPageHoldingTheCurrentIterationWasReported(uint seed)
    {
        using var guest = new TinyGuest(64UL << 20, seed, dirtyRingEntries: 4096);
        using var tracker = new KvmDirtyRingTracker(new KvmVmPort(guest.Vm, [guest.Vcpu.DirtyRing!]));
        tracker.StartTracking();
        using var reported = new SparseDirtyBitmap(40);
        for (ulong iteration = 1; iteration <= 8; iteration++)
        {
            guest.Write(writes: 1500, value: iteration);
            (int missed, _) = Check(guest, tracker, reported, iteration);
            Assert.That(missed, Is.Zero, $"iteration {iteration}");
        }

        Assert.Multiple(() =>
        {
            Assert.That(tracker.EntriesHarvested, Is.GreaterThan(8 * 1000), "entries came through the ring");
            Assert.That(tracker.Overflows, Is.Zero, "runs smaller than the ring never come near its limit");
        });
    }

    [Test]
    public void RunsLargerThanTheRingLoseNothingThroughRingFullExitsAndConservativeMarking()
    {
        // Four times the ring in one KVM_RUN. On this kind of host KVM overshoots the ring's soft limit within a run
        // and can then wedge the ring (full, with nothing left to harvest). Either way nothing may be lost: every
        // overshoot is detected, every slot marked dirty and counted, and a wedge surfaces as an error, not a hang.
        using var guest = new TinyGuest(64UL << 20, seed: 3, dirtyRingEntries: 1024);
        using var tracker = new KvmDirtyRingTracker(new KvmVmPort(guest.Vm, [guest.Vcpu.DirtyRing!]));
        tracker.StartTracking();
        using var reported = new SparseDirtyBitmap(40);
        int ringFullExits = 0, emptyReaps = 0;
        bool wedged = false;
        for (ulong iteration = 1; iteration <= 4 && !wedged; iteration++)
        {
            try
            {
                guest.Write(writes: 4096, value: iteration, onExit: exit =>
                {
                    if (exit != KvmDirtyRingTracker.RingFullExitReason)
                    {
                        return false;
                    }

                    ringFullExits++;
                    emptyReaps = tracker.Reap() == 0 ? emptyReaps + 1 : 0;
                    return emptyReaps < 2;
                });
            }
            catch (InvalidOperationException) when (emptyReaps >= 2)
            {
                wedged = true;
            }

            (int missed, long count) = Check(guest, tracker, reported, iteration);
            Assert.That(missed, Is.Zero, $"iteration {iteration}{(wedged ? " (ring wedged)" : "")}: {count} reported");
        }

        TestContext.Out.WriteLine($"{ringFullExits} ring-full exits, {tracker.EntriesHarvested} entries, {tracker.Overflows} conservative overflows{(wedged ? ", ring wedged" : "")}");
        Assert.Multiple(() =>
        {
            Assert.That(ringFullExits, Is.GreaterThan(0), "the run loop received ring-full exits");
            Assert.That(tracker.Overflows, Is.GreaterThan(0), "overshooting the ring was detected and answered by marking every slot");
        });
    }

    [TestCase(1u)]
    [TestCase(2u)]
    public void AReaperAtACadenceEmptiesTheRingOfARunningGuestAndNothingIsLost(uint seed)
    {
        // The guest runs without pause on its own thread; the reaper empties the ring while it runs; the test reads in
        // rounds, then pauses the vCPU with a kick, reads once more, and judges from memory contents. Ring-full exits
        // go through HandleRingFull as in a VMM's run loop: on hosts whose ring overshoots, a ring pushed past a lap
        // is brought back in step, and one that cannot be is told as Wedged, an outcome judged like any other (every
        // page still reported), after which the VM cannot run on in ring mode.
        using var guest = new TinyGuest(64UL << 20, seed, dirtyRingEntries: 4096);
        var port = new ThreadRecordingRingPort(new KvmVmPort(guest.Vm, [guest.Vcpu.DirtyRing!]));
        using var tracker = new KvmDirtyRingTracker(port, reapInterval: TimeSpan.FromMilliseconds(1));
        tracker.StartTracking();
        using var reported = new SparseDirtyBitmap(40);
        var ownThreads = new List<Thread> { Thread.CurrentThread };
        string Counters(ulong iteration) =>
            $"iteration {iteration}: {guest.LiveWrites:N0} writes so far, {guest.Exits} exits, {tracker.RingFullExits} ring-full, " +
            $"{tracker.ReaperReaps} reaper reaps, {tracker.EntriesHarvested} entries, {tracker.Overflows} overflows, " +
            $"{tracker.Resynchronizations} resynchronisations, wedged {tracker.IsWedged}, last reset {tracker.LastResetCount}";
        DirtyRingFullOutcome lastOutcome = DirtyRingFullOutcome.Reaped;
        bool HandleExit(uint exit)
        {
            if (exit != KvmDirtyRingTracker.RingFullExitReason)
            {
                return false;
            }

            lastOutcome = tracker.HandleRingFull();
            return lastOutcome == DirtyRingFullOutcome.Reaped;
        }

        for (ulong iteration = 1; iteration <= 4 && !tracker.IsWedged; iteration++)
        {
            var pages = new HashSet<ulong>();
            using var pause = new CancellationTokenSource();
            Exception? failure = null;
            var vcpu = new Thread(() =>
            {
                try
                {
                    guest.WriteUntilPaused(iteration, pause.Token, HandleExit);
                }
                catch (Exception e)
                {
                    failure = e;
                }
            });
            long entriesBefore = tracker.EntriesHarvested;
            ownThreads.Add(vcpu);
            vcpu.Start();

            // The reaper's own progress, or the vCPU's end (a wedge, a failure), whichever comes first: no fixed wait.
            Assert.That(SpinWait.SpinUntil(() => tracker.EntriesHarvested > entriesBefore || !vcpu.IsAlive, TimeSpan.FromSeconds(30)), Is.True,
                () => $"the guest runs and the reaper harvests ({Counters(iteration)})");
            for (int round = 0; round < 4 && vcpu.IsAlive; round++)
            {
                long target = tracker.ReaperReaps + 3;
                Assert.That(SpinWait.SpinUntil(() => tracker.ReaperReaps >= target, TimeSpan.FromSeconds(30)), Is.True, () => $"the reaper reaps ({Counters(iteration)})");
                tracker.ReadDirty(tracker.Coverage[0], reported, DirtyReadMode.Clear);
                reported.HarvestInto(pages);
            }

            pause.Cancel();
            Assert.That(vcpu.Join(TimeSpan.FromSeconds(30)), Is.True, () => $"the kick paused the vCPU ({Counters(iteration)})");
            tracker.ReadDirty(tracker.Coverage[0], reported, DirtyReadMode.Clear);
            reported.HarvestInto(pages);

            int missed = 0, written = 0;
            for (ulong page = 2; page < guest.Pages; page++)
            {
                if (guest.Memory.ReadUInt64(page * 4096) == iteration)
                {
                    written++;
                    missed += pages.Contains(page) ? 0 : 1;
                }
            }

            bool wedged = lastOutcome == DirtyRingFullOutcome.Wedged;
            TestContext.Out.WriteLine(Counters(iteration));
            Assert.Multiple(() =>
            {
                // A wedge ends the vCPU's run through its run loop (HandleRingFull said so), never any other failure.
                Assert.That(failure, wedged ? Is.InstanceOf<InvalidOperationException>() : Is.Null, () => Counters(iteration));
                Assert.That(tracker.IsWedged, Is.EqualTo(wedged), () => Counters(iteration));
                if (!wedged)
                {
                    Assert.That(written, Is.GreaterThan(0), () => $"the guest wrote ({Counters(iteration)})");
                }

                Assert.That(missed, Is.Zero, () => $"{written} pages hold the iteration, {pages.Count} reported ({Counters(iteration)})");
            });
        }

        TestContext.Out.WriteLine($"{tracker.ReaperReaps} reaper reaps, {tracker.EntriesHarvested} entries, {tracker.Overflows} overflows, {tracker.Resynchronizations} resynchronisations, wedged {tracker.IsWedged}");
        tracker.StopTracking();
        IReadOnlyList<Thread> reapers = port.HarvestersOtherThan([.. ownThreads]);
        Assert.Multiple(() =>
        {
            Assert.That(reapers, Is.Not.Empty, "a reaper thread harvested");
            Assert.That(reapers.Where(t => t.IsAlive), Is.Empty, "stopping the tracker ended its reaper");
        });
    }

    [Test]
    public void AReapIntervalMustBePositive()
    {
        using var guest = new TinyGuest(1UL << 20, dirtyRingEntries: 1024);
        Assert.That(() => new KvmDirtyRingTracker(new KvmVmPort(guest.Vm, [guest.Vcpu.DirtyRing!]), reapInterval: TimeSpan.Zero), Throws.InstanceOf<ArgumentOutOfRangeException>());
    }

    [Test]
    public void RingSizesKvmWouldRefuseAreRefusedFirst()
    {
        using var kvm = KvmSystem.Open();
        using KvmVm vm = kvm.CreateVm();
        Assert.Multiple(() =>
        {
            Assert.That(() => vm.EnableDirtyRing(1000), Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("power of two"));
            Assert.That(() => vm.EnableDirtyRing(128), Throws.TypeOf<ArgumentOutOfRangeException>());
            Assert.That(() => vm.EnableDirtyRing(1 << 17), Throws.TypeOf<ArgumentOutOfRangeException>());
        });
        vm.EnableDirtyRing(1024);
        Assert.That(() => vm.EnableDirtyRing(2048), Throws.TypeOf<KernelException>().With.Property("Errno").EqualTo(Errno.EINVAL), "the size is set once");
    }

    [Test]
    public void AVmWithoutARingIsRefused()
    {
        using var guest = new TinyGuest(1UL << 20);
        Assert.That(() => new KvmDirtyRingTracker(new KvmVmPort(guest.Vm, [])), Throws.ArgumentException.With.Message.Contains("no dirty ring"));
    }
}
