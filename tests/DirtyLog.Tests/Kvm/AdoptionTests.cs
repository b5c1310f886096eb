// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Samples.LiveMigration;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;
using Microsoft.Win32.SafeHandles;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm;

/// <summary>
/// DirtyLog inside a VMM it did not create, on the real /dev/kvm: the sample's VMM (<see cref="SampleVmm"/>, its own ioctls) creates its VM,
/// memslots and vCPU with its own ioctls and runs its own loop; DirtyLog borrows the descriptors, learns the slots
/// from the VMM, and is judged from guest memory as the kernel's dirty_log_test judges.
/// </summary>
[TestFixture]
[NonParallelizable]
public class AdoptionTests : KvmFixture
{
    private const ulong MiB = 1UL << 20;

    private static HashSet<ulong> Read(IDirtyTracker tracker)
    {
        using var target = new SparseDirtyBitmap(40);
        foreach (AddressRange range in tracker.Coverage)
        {
            tracker.ReadDirty(range, target, DirtyReadMode.Clear);
        }

        var pages = new HashSet<ulong>();
        target.HarvestInto(pages);
        return pages;
    }

    /// <summary>Pages in [first, end) whose first word holds <paramref name="value"/> but were not reported.</summary>
    private static List<ulong> Missed(SampleVmm vmm, HashSet<ulong> reported, ulong first, ulong end, uint value)
    {
        var missed = new List<ulong>();
        for (ulong page = first; page < end; page++)
        {
            if (vmm.Read((page * 4096) + 8) == value && !reported.Contains(page))
            {
                missed.Add(page);
            }
        }

        return missed;
    }

    [TestCase(false, DirtyLoggingControl.ByDirtyLog)]
    [TestCase(true, DirtyLoggingControl.ByDirtyLog)]
    [TestCase(false, DirtyLoggingControl.ByVmm)]
    [TestCase(true, DirtyLoggingControl.ByVmm)]
    public void TheDirtyLogOfAVmTheVmmOwnsFollowsItsSlotsAddedAndRemovedWhileTracking(bool manualProtect, DirtyLoggingControl logging)
    {
        using var vmm = new SampleVmm(32 * MiB, manualProtect);
        bool vmmLogs = logging == DirtyLoggingControl.ByVmm;
        vmm.SetSlot(0, 0, 8 * MiB, vmmLogs);
        vmm.SetSlot(1, 8 * MiB, 8 * MiB, vmmLogs);

        using FileDescriptorHandle vmHandle = FileDescriptorHandle.Borrow(vmm.Vm, "the VMM's VM");
        using KvmVm vm = KvmVm.FromHandle(vmHandle, manualDirtyLogProtect: manualProtect);
        var port = new KvmVmPort(vm, logging: logging);
        port.AddSlot(new KvmMemorySlot(0, 0, 8 * MiB, vmm.HostAddress(0), vmmLogs));
        port.AddSlot(new KvmMemorySlot(1, 8 * MiB, 8 * MiB, vmm.HostAddress(8 * MiB), vmmLogs));
        using var tracker = new KvmDirtyLogTracker(port, "the VMM's VM");
        tracker.StartTracking();

        // Round 1: the guest writes slot 0's upper half and slot 1; all of it is reported.
        vmm.Run(1024, 4096, 1, _ => false);
        Assert.That(Missed(vmm, Read(tracker), 2, 4096, 1), Is.Empty, "round 1");

        UnplugSlot1PlugSlot2AndCheck(vmm, port, tracker, vmmLogs);
    }

    /// <summary>
    /// The hotplug scenario both trackers face: the guest writes slot 1 (8 to 16 MiB); the VMM unplugs it, telling
    /// DirtyLog first, and plugs 4 MiB at 16 MiB as slot 2. The removed slot's pages are all reported, the added slot
    /// whole; then the guest writes the new slot, and exactly that is reported, nothing of the gone one.
    /// </summary>
    private static void UnplugSlot1PlugSlot2AndCheck(SampleVmm vmm, KvmVmPort port, IDirtyTracker tracker, bool vmmLogs)
    {
        vmm.Run(2048, 4096, 2, _ => false);
        port.RemoveSlot(1);
        vmm.SetSlot(1, 8 * MiB, 0, false);
        vmm.SetSlot(2, 16 * MiB, 4 * MiB, vmmLogs);
        port.AddSlot(new KvmMemorySlot(2, 16 * MiB, 4 * MiB, vmm.HostAddress(16 * MiB), vmmLogs));
        HashSet<ulong> first = Read(tracker);
        Assert.Multiple(() =>
        {
            Assert.That(Missed(vmm, first, 2048, 4096, 2), Is.Empty, "the removed slot was harvested before it went");
            for (ulong page = 4096; page < 5120; page++)
            {
                Assert.That(first, Does.Contain(page), "the added slot is reported whole");
            }
        });

        vmm.Run(4096, 5120, 3, _ => false);
        HashSet<ulong> second = Read(tracker);
        Assert.Multiple(() =>
        {
            Assert.That(Missed(vmm, second, 4096, 5120, 3), Is.Empty, "the added slot logs");
            Assert.That(second, Has.None.InRange(2048UL, 4095UL), "the removed slot is no longer covered");
        });
    }

    [Test]
    public void TheDirtyRingOfAVcpuTheVmmOwnsIsHarvestedFromTheVmmsOwnRunLoop()
    {
        // 65,536 entries: the size that never wedged here (see the getting-started guide's ring sizing); 80,000 pages a round fill it.
        const uint entries = 65536;
        const ulong pages = 96 * 1024;
        using var vmm = new SampleVmm(pages * 4096, ringEntries: entries);
        vmm.SetSlot(0, 0, pages * 4096, false);

        using FileDescriptorHandle vmHandle = FileDescriptorHandle.Borrow(vmm.Vm, "the VMM's VM");
        using KvmVm vm = KvmVm.FromHandle(vmHandle, dirtyRingEntries: entries);
        KvmDirtyRing ring;
        using (FileDescriptorHandle vcpuHandle = FileDescriptorHandle.Borrow(vmm.Vcpu, "the VMM's vCPU 0"))
        {
            ring = KvmDirtyRing.Map(vcpuHandle, entries); // the mapping outlives the borrowed handle
        }

        using (ring)
        {
            var port = new KvmVmPort(vm, [ring]);
            port.AddSlot(new KvmMemorySlot(0, 0, pages * 4096, vmm.HostAddress(0), false));
            using var tracker = new KvmDirtyRingTracker(port);
            tracker.StartTracking();
            int ringFullExits = 0;
            for (uint round = 1; round <= 3 && !tracker.IsWedged; round++)
            {
                try
                {
                    vmm.Run(2, 80_002, round, exit =>
                    {
                        Assert.That(exit, Is.EqualTo(KvmDirtyRingTracker.RingFullExitReason));
                        ringFullExits++;
                        return tracker.HandleRingFull() == DirtyRingFullOutcome.Reaped;
                    });
                }
                catch (InvalidOperationException) when (tracker.IsWedged)
                {
                    // A wedged ring ends the VM's ring mode: what it wrote is still all reported (checked below).
                }

                Assert.That(Missed(vmm, Read(tracker), 2, pages, round), Is.Empty, $"round {round}");
            }

            TestContext.Out.WriteLine($"{ringFullExits} ring-full exits, {tracker.Overflows} overflows, {tracker.Resynchronizations} resynchronisations, wedged: {tracker.IsWedged}");
            Assert.That(ringFullExits, Is.GreaterThan(0), "the ring filled and the VMM's loop handled it");
        }
    }

    [Test]
    public void TheDirtyRingOfAVmTheVmmOwnsFollowsItsSlotsAddedAndRemovedWhileTracking()
    {
        const uint entries = 65536;
        using var vmm = new SampleVmm(32 * MiB, ringEntries: entries);
        vmm.SetSlot(0, 0, 8 * MiB, false);
        vmm.SetSlot(1, 8 * MiB, 8 * MiB, false);
        using FileDescriptorHandle vmHandle = FileDescriptorHandle.Borrow(vmm.Vm, "the VMM's VM");
        using KvmVm vm = KvmVm.FromHandle(vmHandle, dirtyRingEntries: entries);
        using FileDescriptorHandle vcpuHandle = FileDescriptorHandle.Borrow(vmm.Vcpu, "the VMM's vCPU 0");
        using KvmDirtyRing ring = KvmDirtyRing.Map(vcpuHandle, entries);
        var port = new KvmVmPort(vm, [ring]);
        port.AddSlot(new KvmMemorySlot(0, 0, 8 * MiB, vmm.HostAddress(0), false));
        port.AddSlot(new KvmMemorySlot(1, 8 * MiB, 8 * MiB, vmm.HostAddress(8 * MiB), false));
        using var tracker = new KvmDirtyRingTracker(port);
        tracker.StartTracking();

        UnplugSlot1PlugSlot2AndCheck(vmm, port, tracker, vmmLogs: false);
        Assert.That(tracker.UnknownEntries, Is.Zero, "the rings were reaped while the removed slot still decoded");
    }

    [Test]
    public void ABorrowedDescriptorIsNeverClosedByDirtyLogAndStaysOpenWhileBorrowed()
    {
        using var vmm = new SampleVmm(4 * MiB);
        int fd = (int)vmm.Vm.DangerousGetHandle();
        using (FileDescriptorHandle borrowed = FileDescriptorHandle.Borrow(vmm.Vm, "vm"))
        {
            Assert.That(borrowed.OwnsDescriptor, Is.False);
            using (KvmVm.FromHandle(borrowed))
            {
            }
        }

        Assert.That(File.Exists($"/proc/self/fd/{fd}"), Is.True, "still the VMM's, still open");

        // The VMM disposing its handle while DirtyLog borrows it does not close the descriptor under DirtyLog.
        using var vmm2 = new SampleVmm(4 * MiB);
        FileDescriptorHandle held = FileDescriptorHandle.Borrow(vmm2.Vm, "vm");
        int fd2 = held.Descriptor;
        vmm2.Vm.Dispose();
        using (KvmVm stillUsable = KvmVm.FromHandle(held))
        {
            Assert.That(stillUsable.CheckExtension(DirtyLog.Native.Linux.Kvm.KvmConstants.KVM_CAP_USER_MEMORY), Is.GreaterThan(0));
        }

        held.Dispose();
        Assert.That(File.Exists($"/proc/self/fd/{fd2}"), Is.False, "closed by the VMM's handle once DirtyLog let go");
    }

    [Test]
    public void DescriptorsThatAreNotWhatTheyClaimAreRefusedWithTheCallAndTheErrno()
    {
        using var vmm = new SampleVmm(4 * MiB);
        using SafeFileHandle devNull = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.ReadWrite);
        using FileDescriptorHandle notAVm = FileDescriptorHandle.Borrow(devNull, "not a VM");
        using FileDescriptorHandle aVcpu = FileDescriptorHandle.Borrow(vmm.Vcpu, "a vCPU");
        using FileDescriptorHandle aVm = FileDescriptorHandle.Borrow(vmm.Vm, "a VM");
        Assert.Multiple(() =>
        {
            Assert.That(() => KvmVm.FromHandle(notAVm), Throws.ArgumentException.With.Message.Contains("/dev/null").And.Message.Contains("not a KVM VM"));
            Assert.That(() => KvmVm.FromHandle(aVcpu), Throws.ArgumentException.With.Message.Contains("kvm-vcpu"));
            Assert.That(() => KvmDirtyRing.Map(aVm, 4096), Throws.ArgumentException.With.Message.Contains("not a KVM vCPU"));
            Assert.That(() => KvmDirtyRing.Map(aVcpu, 4096), Throws.InstanceOf<KernelException>().With.Property(nameof(KernelException.Call)).EqualTo("mmap"),
                "a vCPU of a VM with no ring");
            Assert.That(() => FileDescriptorHandle.Borrow(-1, "x"), Throws.InstanceOf<ArgumentOutOfRangeException>());
        });

        // A descriptor closed before DirtyLog sees it: EBADF, named.
        FileDescriptorHandle closed = FileDescriptorHandle.Borrow(999_999, "a closed descriptor");
        var error = Assert.Throws<KernelException>(() => KvmVm.FromHandle(closed))!;
        Assert.That(error.Errno, Is.EqualTo(Errno.EBADF));
    }

    [Test]
    public void ARingOfAVcpuOfAnotherVmIsCaughtAtTheSecondResetAndFaultsTheTracker()
    {
        const uint entries = 4096;
        using var mine = new SampleVmm(8 * MiB, ringEntries: entries);
        using var other = new SampleVmm(8 * MiB, ringEntries: entries);
        mine.SetSlot(0, 0, 8 * MiB, false);
        other.SetSlot(0, 0, 8 * MiB, true);

        using FileDescriptorHandle vmHandle = FileDescriptorHandle.Borrow(mine.Vm, "my VM");
        using KvmVm vm = KvmVm.FromHandle(vmHandle, dirtyRingEntries: entries);
        using FileDescriptorHandle wrongVcpu = FileDescriptorHandle.Borrow(other.Vcpu, "another VM's vCPU");
        using KvmDirtyRing wrongRing = KvmDirtyRing.Map(wrongVcpu, entries);
        var port = new KvmVmPort(vm, [wrongRing]);
        port.AddSlot(new KvmMemorySlot(0, 0, 8 * MiB, mine.HostAddress(0), false));
        using var tracker = new KvmDirtyRingTracker(port);
        tracker.StartTracking();
        other.Run(2, 10, 1, _ => false); // the other VM's vCPU pushes entries into the ring we were given

        // One reset that leaves the harvested entries uncollected is what a concurrent overshoot looks like too (the
        // vCPU pushed over an entry already handed back; the next harvest reaches it), so the first read stands and
        // the second, whose reset again collects nothing, faults.
        Read(tracker);
        Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Started), "one uncollected reset is tolerated");
        var error = Assert.Throws<DirtyTrackerException>(() => Read(tracker))!;
        Assert.Multiple(() =>
        {
            Assert.That(error.ToString(), Does.Contain("another VM"));
            Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Faulted), "its coverage must be treated as dirty");
        });
    }

    [Test]
    public void UnderTheVmmsOwnLoggingASlotDeclaredWithoutTheFlagRefusesToStart()
    {
        using var vmm = new SampleVmm(8 * MiB);
        vmm.SetSlot(0, 0, 8 * MiB, false);
        using FileDescriptorHandle vmHandle = FileDescriptorHandle.Borrow(vmm.Vm, "vm");
        using KvmVm vm = KvmVm.FromHandle(vmHandle);
        var port = new KvmVmPort(vm, logging: DirtyLoggingControl.ByVmm);
        port.AddSlot(new KvmMemorySlot(0, 0, 8 * MiB, vmm.HostAddress(0), LogDirtyPages: false));
        using var tracker = new KvmDirtyLogTracker(port, "vm");
        var error = Assert.Throws<DirtyTrackerException>(tracker.StartTracking)!;
        Assert.Multiple(() =>
        {
            Assert.That(error.Message, Does.Contain("Slot 0").And.Contain("KVM_MEM_LOG_DIRTY_PAGES"));
            Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Stopped), "nothing started");
        });
    }
}
