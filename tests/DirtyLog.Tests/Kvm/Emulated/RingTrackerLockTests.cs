// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm.Emulated;

/// <summary>
/// What a vCPU and a harvest must never wait for: a slot change's <c>KVM_SET_USER_MEMORY_REGION</c> (held at a gate
/// here, as a slow kernel would) must not hold up a ring-full exit, and a stop's ioctls must not hold up a read,
/// which is refused at once instead.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class RingTrackerLockTests
{
    private const ulong MiB = 1UL << 20;

    /// <summary>The emulated VM, with its logging switch held at a gate once <see cref="HoldLogging"/> is set.</summary>
    private sealed class GatedLoggingPort(EmulatedKvmVm vm) : IKvmDirtyRingPort
    {
        private readonly ManualResetEventSlim _open = new(true);

        public int InSetDirtyLogging;

        public void HoldLogging() => _open.Reset();

        public void ReleaseLogging() => _open.Set();

        public string Name => vm.Name;

        public long SlotTableVersion => vm.SlotTableVersion;

        public uint RingEntries => vm.RingEntries;

        public int RingCount => vm.RingCount;

        public IReadOnlyList<KvmMemorySlot> GetSlots() => vm.GetSlots();

        public void SetDirtyLogging(uint slotId, bool enable)
        {
            Interlocked.Increment(ref InSetDirtyLogging);
            try
            {
                Assert.That(_open.Wait(TimeSpan.FromSeconds(30)), Is.True, "the test released the gate");
                vm.SetDirtyLogging(slotId, enable);
            }
            finally
            {
                Interlocked.Decrement(ref InSetDirtyLogging);
            }
        }

        public int HarvestRing<TVisitor>(int ring, ref TVisitor visitor)
            where TVisitor : struct, IDirtyRingVisitor => vm.HarvestRing(ring, ref visitor);

        public int SkipRecycledEntries(int ring) => vm.SkipRecycledEntries(ring);

        public int ResetDirtyRings() => vm.ResetDirtyRings();

        public IDisposable WatchSlots(IKvmSlotWatcher watcher) => vm.WatchSlots(watcher);
    }

    [Test]
    public void ARingFullExitIsNotHeldUpBySlotLoggingInTheKernel()
    {
        using var vm = new EmulatedKvmVm(64 * MiB, vcpus: 1, ringEntries: 1024);
        vm.AddSlot(0, 0, 32 * MiB);
        var port = new GatedLoggingPort(vm);
        using var tracker = new KvmDirtyRingTracker(port);
        tracker.StartTracking();
        Assert.That(vm.Vcpus[0].Run([8, 4096 + 8], 1, out _), Is.EqualTo(EmulatedVcpuExit.Completed));

        port.HoldLogging();
        var hotplug = new Thread(() => vm.AddSlot(1, 32 * MiB, 16 * MiB)) { IsBackground = true };
        hotplug.Start();
        try
        {
            Assert.That(SpinWait.SpinUntil(() => Volatile.Read(ref port.InSetDirtyLogging) == 1, TimeSpan.FromSeconds(30)), Is.True, "the slot's logging is in the kernel");

            // The vCPU's ring-full exit and a reaper's reap go through while the slot change waits in its ioctl.
            DirtyRingFullOutcome outcome = DirtyRingFullOutcome.Wedged;
            var vcpu = new Thread(() => outcome = tracker.HandleRingFull()) { IsBackground = true };
            vcpu.Start();
            Assert.That(vcpu.Join(TimeSpan.FromSeconds(30)), Is.True, "the ring-full exit waited behind the slot change");
            Assert.Multiple(() =>
            {
                Assert.That(outcome, Is.EqualTo(DirtyRingFullOutcome.Reaped));
                Assert.That(tracker.EntriesHarvested, Is.EqualTo(2));
                Assert.That(hotplug.IsAlive, Is.True, "the slot change is still in its ioctl");
            });
        }
        finally
        {
            port.ReleaseLogging();
        }

        Assert.That(hotplug.Join(TimeSpan.FromSeconds(30)), Is.True);
        using var target = new SparseDirtyBitmap(40);
        tracker.ReadDirty(new AddressRange(0, 48 * MiB), target, DirtyReadMode.Clear);
        var pages = new HashSet<ulong>();
        target.HarvestInto(pages);
        Assert.That(pages, Has.Count.EqualTo((16 * MiB / 4096) + 2), "the added slot is reported whole, and the two writes the ring-full exit reaped");
    }

    [Test]
    public void AReadDuringAStopIsRefusedAtOnceNotHeldUpByTheStopsIoctls()
    {
        using var vm = new EmulatedKvmVm(64 * MiB, vcpus: 1, ringEntries: 1024);
        vm.AddSlot(0, 0, 32 * MiB);
        var port = new GatedLoggingPort(vm);
        using var tracker = new KvmDirtyRingTracker(port);
        tracker.StartTracking();
        port.HoldLogging();
        var stop = new Thread(tracker.StopTracking) { IsBackground = true };
        stop.Start();
        try
        {
            Assert.That(SpinWait.SpinUntil(() => Volatile.Read(ref port.InSetDirtyLogging) == 1, TimeSpan.FromSeconds(30)), Is.True, "the stop is in the kernel");
            using var target = new SparseDirtyBitmap(40);
            Exception? refused = null;
            var reader = new Thread(() =>
            {
                try
                {
                    tracker.ReadDirty(new AddressRange(0, 32 * MiB), target, DirtyReadMode.Clear);
                }
                catch (Exception e)
                {
                    refused = e;
                }
            }) { IsBackground = true };
            reader.Start();
            Assert.That(reader.Join(TimeSpan.FromSeconds(30)), Is.True, "the read waited behind the stop");
            Assert.That(refused, Is.InstanceOf<InvalidOperationException>().With.Message.Contains("stopping"));
        }
        finally
        {
            port.ReleaseLogging();
        }

        Assert.That(stop.Join(TimeSpan.FromSeconds(30)), Is.True);
        Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Stopped));
    }
}
