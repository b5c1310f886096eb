// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm.Emulated;

/// <summary>
/// The dirty-ring tracker's logic (ordering, reset, slot decoding, soft-full, overshoot, a wedged ring, the reaper) on
/// the emulated VM, without <c>/dev/kvm</c>: each test judges from memory contents, as the kernel's
/// <c>dirty_log_test</c> does, that every page written with the round's value was reported.
/// </summary>
[TestFixture]
public class EmulatedDirtyRingTrackerTests
{
    private const ulong MiB = 1UL << 20;
    private const uint Entries = 4096;

    private EmulatedKvmVm _vm = null!;
    private SparseDirtyBitmap _reported = null!;

    [SetUp]
    public void CreateVm()
    {
        _vm = new EmulatedKvmVm(64 * MiB, vcpus: 2, ringEntries: Entries);
        _vm.AddSlot(0, 0, 32 * MiB);
        _vm.AddSlot(1, 32 * MiB, 16 * MiB);
        _reported = new SparseDirtyBitmap(40);
    }

    [TearDown]
    public void DisposeVm()
    {
        _reported.Dispose();
        _vm.Dispose();
    }

    /// <summary>Pseudo-random page addresses over both slots (offset 8 inside the page, so page 0 is not special).</summary>
    private static ulong[] RandomPages(int seed, int count) => FillRandom(new ulong[count], seed);

    private static ulong[] FillRandom(ulong[] addresses, int seed)
    {
        var random = new Random(seed);
        for (int i = 0; i < addresses.Length; i++)
        {
            addresses[i] = ((ulong)random.NextInt64(0, (long)(48 * MiB / 4096)) * 4096) + 8;
        }

        return addresses;
    }

    /// <summary>A run loop: runs the batch, handing every ring-full exit to the tracker, as a VMM's vCPU thread does.</summary>
    /// <exception cref="InvalidOperationException">The tracker said the ring is wedged: the vCPU cannot run on.</exception>
    private static int RunToEnd(EmulatedKvmVcpu vcpu, ulong[] addresses, ulong value, KvmDirtyRingTracker tracker)
    {
        int done = 0, fullExits = 0;
        while (done < addresses.Length)
        {
            EmulatedVcpuExit exit = vcpu.Run(addresses.AsSpan(done), value, out int written);
            done += written;
            if (exit == EmulatedVcpuExit.DirtyRingFull)
            {
                fullExits++;
                if (tracker.HandleRingFull() == DirtyRingFullOutcome.Wedged)
                {
                    throw new InvalidOperationException($"the ring is wedged after {done} writes and {fullExits} ring-full exits");
                }
            }
        }

        return fullExits;
    }

    private HashSet<ulong> ReadAll(KvmDirtyRingTracker tracker)
    {
        tracker.ReadDirty(new AddressRange(0, 48 * MiB), _reported, DirtyReadMode.Clear);
        var pages = new HashSet<ulong>();
        _reported.HarvestInto(pages);
        return pages;
    }

    private List<ulong> Missed(HashSet<ulong> reported, ulong value) =>
        Enumerable.Range(0, (int)(48 * MiB / 4096)).Select(p => (ulong)p)
            .Where(p => _vm.Memory.ReadUInt64((p * 4096) + 8) == value && !reported.Contains(p)).ToList();

    [TestCase(1)]
    [TestCase(2)]
    public void EveryPageWrittenInARoundIsReportedInItsSlotAndNoOtherIs(int seed)
    {
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        for (ulong round = 1; round <= 4; round++)
        {
            ulong[] pages = RandomPages(seed * 100 + (int)round, 1500);
            RunToEnd(_vm.Vcpus[(int)round % 2], pages, round, tracker);
            HashSet<ulong> reported = ReadAll(tracker);
            Assert.That(Missed(reported, round), Is.Empty, $"round {round}");
            Assert.That(reported, Is.EquivalentTo(pages.Select(a => a / 4096).Distinct()), $"round {round}: only the pages written");
        }
    }

    [Test]
    public void APageIsReportedAgainOnlyAfterItIsWrittenAgainAfterTheReset()
    {
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        RunToEnd(_vm.Vcpus[0], [8, 4096 + 8], 1, tracker);
        Assert.That(ReadAll(tracker), Is.EquivalentTo(new ulong[] { 0, 1 }));
        Assert.That(tracker.LastResetCount, Is.EqualTo(2), "the read reset both entries");
        Assert.That(ReadAll(tracker), Is.Empty, "nothing written since");
        RunToEnd(_vm.Vcpus[1], [4096 + 8, 4096 + 16], 2, tracker);
        Assert.That(ReadAll(tracker), Is.EquivalentTo(new ulong[] { 1 }), "one entry for two writes to a page the reset re-protected");
    }

    [Test]
    public void AVcpuStopsAtTheSoftLimitAndAReapAtThatPointIsTreatedAsAPossibleOverflow()
    {
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        ulong[] pages = Enumerable.Range(0, (int)_vm.RingSoftLimit + 10).Select(p => ((ulong)p * 4096) + 8).ToArray();
        EmulatedVcpuExit exit = _vm.Vcpus[0].Run(pages, 1, out int written);
        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.EqualTo(EmulatedVcpuExit.DirtyRingFull));
            Assert.That(written, Is.EqualTo((int)_vm.RingSoftLimit), "the vCPU exits before the write that would pass the soft limit");
        });

        Assert.That(tracker.Reap(), Is.EqualTo((int)_vm.RingSoftLimit));
        Assert.That(tracker.Overflows, Is.EqualTo(1), "a ring at its soft limit may have overflowed on such hosts: every slot is marked");
        Assert.That(_vm.Vcpus[0].Run(pages.AsSpan(written), 1, out int rest), Is.EqualTo(EmulatedVcpuExit.Completed));
        Assert.That(rest, Is.EqualTo(10));
        Assert.That(ReadAll(tracker).Count, Is.EqualTo((int)(48 * MiB / 4096)), "every page of every slot");
    }

    [Test]
    public void ARunThatOvershootsTheRingLosesEntriesButTheTrackerLosesNoPage()
    {
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        EmulatedKvmVcpu vcpu = _vm.Vcpus[0];
        vcpu.OvershootNextRun = true;
        ulong[] pages = Enumerable.Range(0, (int)Entries + 300).Select(p => ((ulong)p * 4096) + 8).ToArray();

        Assert.That(vcpu.Run(pages, 7, out int written), Is.EqualTo(EmulatedVcpuExit.Completed));
        Assert.Multiple(() =>
        {
            Assert.That(written, Is.EqualTo(pages.Length));
            Assert.That(vcpu.HasOvershot, Is.True);
            Assert.That(vcpu.LostEntries, Is.EqualTo(300), "KVM pushed the last 300 over the first 300, not yet harvested");
        });

        HashSet<ulong> reported = ReadAll(tracker);
        Assert.That(Missed(reported, 7), Is.Empty, "the overflow was detected and answered by marking every slot");
        Assert.That(tracker.Overflows, Is.GreaterThan(0));
    }

    [Test]
    public void ARingPushedPastALapIsBroughtBackInStepAndItsNextWritesAreReported()
    {
        // A lap and 300: the reset recycles a lap, and KVM still counts 300 entries whose flags say recycled. Without
        // skipping them every later harvest stops at the first, and the next writes are never reported.
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        EmulatedKvmVcpu vcpu = _vm.Vcpus[0];
        vcpu.OvershootNextRun = true;
        ulong[] lap = Enumerable.Range(0, (int)Entries + 300).Select(p => ((ulong)p * 4096) + 8).ToArray();
        Assert.That(vcpu.Run(lap, 1, out _), Is.EqualTo(EmulatedVcpuExit.Completed));
        Assert.That(Missed(ReadAll(tracker), 1), Is.Empty, "the overflow marks every slot");
        Assert.That(vcpu.RingUsed, Is.EqualTo(300u), "KVM counts the 300 it pushed past the lap, which its reset recycled");

        ulong[] next = [.. Enumerable.Range(0, 200).Select(i => (40 * MiB) + ((ulong)i * 4096 * 3) + 8)];
        Assert.That(RunToEnd(vcpu, next, 2, tracker), Is.Zero, "300 + 200 entries stay below the soft limit");
        HashSet<ulong> reported = ReadAll(tracker);
        Assert.Multiple(() =>
        {
            Assert.That(Missed(reported, 2), Is.Empty, "the writes after the overflow are harvested behind the skipped entries");
            Assert.That(tracker.Resynchronizations, Is.EqualTo(1));
            Assert.That(vcpu.SkippedEntries, Is.EqualTo(300));
            Assert.That(vcpu.RingUsed, Is.Zero, "the reset walked over the skipped entries to the live ones: back in step");
        });

        ulong[] after = [.. Enumerable.Range(0, 50).Select(i => (41 * MiB) + ((ulong)i * 4096) + 8)];
        RunToEnd(vcpu, after, 3, tracker);
        reported = ReadAll(tracker);
        Assert.Multiple(() =>
        {
            Assert.That(reported, Is.EquivalentTo(after.Select(a => a / 4096)), "in step again: exactly the pages written");
            Assert.That(tracker.Resynchronizations, Is.EqualTo(1));
        });
    }

    [Test]
    public void ARunLoopOverARingPushedPastALapRunsOnThroughRingFullExits()
    {
        // The same overflow met by a VMM's run loop: the first ring-full exit harvests the lap, the next finds the
        // ring out of step and brings it back; the vCPU never stops for good and no page is lost.
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        EmulatedKvmVcpu vcpu = _vm.Vcpus[0];
        vcpu.OvershootNextRun = true;
        ulong[] lap = Enumerable.Range(0, (int)Entries + 300).Select(p => ((ulong)p * 4096) + 8).ToArray();
        Assert.That(vcpu.Run(lap, 1, out _), Is.EqualTo(EmulatedVcpuExit.Completed));
        ulong[] more = [.. Enumerable.Range(0, 10000).Select(i => ((ulong)i * 4096) + 8)];
        int fullExits = RunToEnd(vcpu, more, 2, tracker);
        Assert.Multiple(() =>
        {
            Assert.That(fullExits, Is.GreaterThanOrEqualTo(2), "ring-full at once after the overflow, then again at the soft limit");
            Assert.That(Missed(ReadAll(tracker), 2), Is.Empty);
            Assert.That(tracker.Resynchronizations, Is.GreaterThanOrEqualTo(1));
            Assert.That(tracker.IsWedged, Is.False);
            Assert.That(_vm.Memory.ReadUInt64(9999 * 4096 + 8), Is.EqualTo(2UL), "the vCPU ran every write");
        });
    }

    /// <summary>Overshoots by a lap and more than the soft limit: after the reset KVM counts the ring full, every entry recycled.</summary>
    private ulong[] OvershootBeyondRecovery(EmulatedKvmVcpu vcpu, ulong value)
    {
        vcpu.OvershootNextRun = true;
        ulong[] pages = Enumerable.Range(0, (int)(Entries + _vm.RingSoftLimit + 10)).Select(p => ((ulong)p * 4096) + 8).ToArray();
        Assert.That(vcpu.Run(pages, value, out _), Is.EqualTo(EmulatedVcpuExit.Completed), "the overshooting run");
        return pages;
    }

    [Test]
    public void AWedgedRingAnswersRingFullWithNothingToHarvestAndTheRunLoopCanTell()
    {
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        EmulatedKvmVcpu vcpu = _vm.Vcpus[0];
        OvershootBeyondRecovery(vcpu, 3);

        var e = Assert.Throws<InvalidOperationException>(() => RunToEnd(vcpu, [40 * MiB], 4, tracker));
        Assert.That(e!.Message, Does.Contain("wedged"));
        Assert.Multiple(() =>
        {
            Assert.That(tracker.Reap(), Is.Zero, "nothing left to harvest");
            Assert.That(vcpu.RingUsed, Is.GreaterThanOrEqualTo(_vm.RingSoftLimit), "KVM still counts the ring full");
            Assert.That(_vm.Memory.ReadUInt64(40 * MiB), Is.Zero, "the wedged vCPU never ran the write");
            Assert.That(Missed(ReadAll(tracker), 3), Is.Empty, "what it wrote before is all reported (every slot marked)");
        });
    }

    [Test]
    public void TheRunLoopsOneCallSaysReapedThenWedgedAndAWedgedRingLosesNothing()
    {
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        EmulatedKvmVcpu vcpu = _vm.Vcpus[0];
        OvershootBeyondRecovery(vcpu, 3);

        var outcomes = new List<DirtyRingFullOutcome>();
        while (vcpu.Run([40 * MiB], 4, out _) == EmulatedVcpuExit.DirtyRingFull && outcomes.Count < 10)
        {
            DirtyRingFullOutcome outcome = tracker.HandleRingFull();
            outcomes.Add(outcome);
            if (outcome == DirtyRingFullOutcome.Wedged)
            {
                break;
            }
        }

        Assert.Multiple(() =>
        {
            Assert.That(outcomes, Is.EqualTo(new[] { DirtyRingFullOutcome.Reaped, DirtyRingFullOutcome.Reaped, DirtyRingFullOutcome.Reaped, DirtyRingFullOutcome.Wedged }),
                "the first reap harvests the lap, then one more exit than the VM has rings finds nothing to harvest or bring back in step");
            Assert.That(tracker.IsWedged, Is.True);
            Assert.That(tracker.RingFullExits, Is.EqualTo(4));
            Assert.That(tracker.HandleRingFull(), Is.EqualTo(DirtyRingFullOutcome.Wedged), "a run loop that retries is told again at once");
            Assert.That(Missed(ReadAll(tracker), 3), Is.Empty, "what it wrote before is all reported");
        });
    }

    [Test]
    public void RingFullExitsWhoseEntriesAReaperTookAreNotAWedge()
    {
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        Assert.That(tracker.HandleRingFull(), Is.EqualTo(DirtyRingFullOutcome.Reaped), "nothing to harvest: one empty exit");

        // Between two ring-full exits a reaper (another thread's Reap) takes what the vCPU pushed: the ring moves.
        Assert.That(_vm.Vcpus[0].Run([8, 4096 + 8], 1, out _), Is.EqualTo(EmulatedVcpuExit.Completed));
        Assert.That(tracker.Reap(), Is.EqualTo(2));
        Assert.Multiple(() =>
        {
            Assert.That(tracker.HandleRingFull(), Is.EqualTo(DirtyRingFullOutcome.Reaped), "the entries went to the reaper, not nowhere");
            Assert.That(tracker.IsWedged, Is.False);
            Assert.That(tracker.HandleRingFull(), Is.EqualTo(DirtyRingFullOutcome.Reaped), "two vCPUs: each may bring one empty exit");
            Assert.That(tracker.HandleRingFull(), Is.EqualTo(DirtyRingFullOutcome.Wedged), "three empty exits in a row with nothing harvested between, on two rings");
        });
    }

    [Test]
    public void ASlotRemovedWhileTrackingIsHarvestedFirstAndOnlyItsWrittenPagesAreReported()
    {
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        RunToEnd(_vm.Vcpus[0], [(32 * MiB) + 8, 8], 5, tracker);
        _vm.DeleteSlot(1);

        HashSet<ulong> reported = ReadAll(tracker);
        Assert.Multiple(() =>
        {
            Assert.That(tracker.UnknownEntries, Is.Zero, "the rings were reaped while the slot still decoded");
            Assert.That(reported, Is.EquivalentTo(new[] { 32 * MiB / 4096, 0UL }), "the removed slot's page, and the other slot's");
        });
    }

    [Test]
    public void EntriesOfASlotDeletedWithoutTellingTheTrackerAreUnknownAndMarkEveryRemainingSlot()
    {
        // A VMM that deletes a slot without telling DirtyLog: the entries naming it decode to nothing.
        using var tracker = new KvmDirtyRingTracker(new ThreadRecordingRingPort(_vm, tellSlotChanges: false));
        tracker.StartTracking();
        RunToEnd(_vm.Vcpus[0], [(32 * MiB) + 8, 8], 5, tracker);
        _vm.DeleteSlot(1);

        HashSet<ulong> reported = ReadAll(tracker);
        Assert.Multiple(() =>
        {
            Assert.That(tracker.UnknownEntries, Is.EqualTo(1));
            Assert.That(reported.Count, Is.EqualTo((int)(32 * MiB / 4096)), "every page of the slot that remains");
        });
    }

    [Test]
    public void ASlotMovedWhileTrackingIsLoggedAndReportedWholeAtItsNewAddress()
    {
        using var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        _vm.DeleteSlot(1);
        _vm.AddSlot(1, 40 * MiB, 8 * MiB);
        Assert.That(_vm.GetSlots().Single(s => s.Id == 1).LogDirtyPages, Is.True, "the tracker logs the new slot");
        RunToEnd(_vm.Vcpus[0], [(40 * MiB) + 8], 6, tracker);
        ulong first = 40 * MiB / 4096;
        Assert.That(ReadAll(tracker), Is.EquivalentTo(Enumerable.Range(0, (int)(8 * MiB / 4096)).Select(p => first + (ulong)p)),
            "never sent: all of it");

        RunToEnd(_vm.Vcpus[0], [(44 * MiB) + 8], 7, tracker);
        Assert.That(ReadAll(tracker), Is.EquivalentTo(new[] { 44 * MiB / 4096 }), "then only what is written");
    }

    [Test]
    public void StartingLogsEverySlotAndStoppingStopsItAndResetsTheRings()
    {
        var tracker = new KvmDirtyRingTracker(_vm);
        tracker.StartTracking();
        Assert.That(_vm.GetSlots().Select(s => s.LogDirtyPages), Is.All.True);
        RunToEnd(_vm.Vcpus[0], [8], 1, tracker);
        tracker.Dispose();
        Assert.That(_vm.GetSlots().Select(s => s.LogDirtyPages), Is.All.False);
        Assert.That(_vm.Vcpus[0].Run(RandomPages(3, 50), 2, out _), Is.EqualTo(EmulatedVcpuExit.Completed));
        var none = default(NoVisitor);
        Assert.That(_vm.HarvestRing(0, ref none), Is.Zero, "nothing is pushed while no slot logs");
    }

    [TestCase(1)]
    [TestCase(2)]
    public void AReaperAtACadenceKeepsTwoRunningVcpusOutOfRingFullAndNothingIsLost(int seed)
    {
        var port = new ThreadRecordingRingPort(_vm);
        using var tracker = new KvmDirtyRingTracker(port, reapInterval: TimeSpan.FromMilliseconds(1));
        tracker.StartTracking();
        for (ulong round = 1; round <= 3; round++)
        {
            using var stop = new ManualResetEventSlim();
            var failures = new List<Exception>();
            Thread[] vcpus = _vm.Vcpus.Select(vcpu => new Thread(() =>
            {
                try
                {
                    var random = new Random(seed * 1000 + (int)round * 10 + vcpu.Id);
                    while (!stop.IsSet)
                    {
                        RunToEnd(vcpu, FillRandom(new ulong[64], random.Next()), round, tracker);
                    }
                }
                catch (Exception e)
                {
                    lock (failures)
                    {
                        failures.Add(e);
                    }
                }
            }) { IsBackground = true }).ToArray();
            foreach (Thread t in vcpus)
            {
                t.Start();
            }

            // Reads in rounds while the vCPUs run: wait for the reaper's own progress, not for time.
            var pages = new HashSet<ulong>();
            for (int read = 0; read < 3; read++)
            {
                long target = tracker.ReaperReaps + 3;
                Assert.That(SpinWait.SpinUntil(() => tracker.ReaperReaps >= target, TimeSpan.FromSeconds(10)), Is.True, "the reaper reaps");
                pages.UnionWith(ReadAll(tracker));
            }

            stop.Set();
            foreach (Thread t in vcpus)
            {
                Assert.That(t.Join(TimeSpan.FromSeconds(10)), Is.True);
            }

            pages.UnionWith(ReadAll(tracker));
            Assert.That(failures, Is.Empty);
            Assert.That(Missed(pages, round), Is.Empty, $"round {round}");
        }

        Assert.That(tracker.ReaperReaps, Is.GreaterThan(0));
        tracker.StopTracking();
        Assert.That(port.HarvestersOtherThan(Thread.CurrentThread).Where(t => t.IsAlive), Is.Empty, "stopping the tracker ended its reaper");
    }

    private struct NoVisitor : IDirtyRingVisitor
    {
        public void Visit(uint slot, ulong offset) => throw new InvalidOperationException("an entry was pushed");
    }
}
