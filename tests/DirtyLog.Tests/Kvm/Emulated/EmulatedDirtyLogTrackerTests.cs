// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm.Emulated;

/// <summary>The dirty-log tracker, classic and manual protect, on the emulated VM; and the emulator held to KVM's rules.</summary>
[TestFixture]
public class EmulatedDirtyLogTrackerTests
{
    private const ulong MiB = 1UL << 20;

    private static EmulatedKvmVm Vm(bool manualProtect)
    {
        var vm = new EmulatedKvmVm(16 * MiB, manualProtect: manualProtect);
        vm.AddSlot(0, 0, 8 * MiB);
        vm.AddSlot(1, 8 * MiB, 8 * MiB);
        return vm;
    }

    private static HashSet<ulong> Read(KvmDirtyLogTracker tracker, SparseDirtyBitmap target, DirtyReadMode mode)
    {
        tracker.ReadDirty(new AddressRange(0, 16 * MiB), target, mode);
        var pages = new HashSet<ulong>();
        target.HarvestInto(pages);
        return pages;
    }

    [TestCase(false)]
    [TestCase(true)]
    public void WritesToTheSlotAreReportedOnceAndWritesAfterAReadAgain(bool manualProtect)
    {
        using EmulatedKvmVm vm = Vm(manualProtect);
        using var tracker = new KvmDirtyLogTracker(vm, 1);
        using var target = new SparseDirtyBitmap(40);
        tracker.StartTracking();
        vm.Vcpus[0].Run([(8 * MiB) + 8, (9 * MiB) + 8, 8], 1, out _); // the last one is in slot 0, not tracked here

        Assert.That(Read(tracker, target, DirtyReadMode.Clear), Is.EquivalentTo(new[] { 8 * MiB / 4096, 9 * MiB / 4096 }));
        Assert.That(Read(tracker, target, DirtyReadMode.Clear), Is.Empty);
        vm.Vcpus[0].Run([(9 * MiB) + 16], 2, out _);
        Assert.That(Read(tracker, target, DirtyReadMode.Clear), Is.EquivalentTo(new[] { 9 * MiB / 4096 }));
    }

    [Test]
    public void ManualProtectPeeksWithoutClearingAndClearsOnlyWhatItFetched()
    {
        using EmulatedKvmVm vm = Vm(manualProtect: true);
        using var tracker = new KvmDirtyLogTracker(vm, 0);
        using var target = new SparseDirtyBitmap(40);
        tracker.StartTracking();
        Assert.That(tracker.CanReadWithoutClear, Is.True);
        vm.Vcpus[0].Run([8], 1, out _);
        Assert.That(Read(tracker, target, DirtyReadMode.NoClear), Is.EquivalentTo(new ulong[] { 0 }));
        Assert.That(Read(tracker, target, DirtyReadMode.NoClear), Is.EquivalentTo(new ulong[] { 0 }), "a peek leaves the bits");
        Assert.That(Read(tracker, target, DirtyReadMode.Clear), Is.EquivalentTo(new ulong[] { 0 }));
        Assert.That(Read(tracker, target, DirtyReadMode.Clear), Is.Empty);
    }

    [Test]
    public void ClassicModeCannotPeek()
    {
        using EmulatedKvmVm vm = Vm(manualProtect: false);
        using var tracker = new KvmDirtyLogTracker(vm, 0);
        using var target = new SparseDirtyBitmap(40);
        tracker.StartTracking();
        Assert.Throws<NotSupportedException>(() => tracker.ReadDirty(new AddressRange(0, 8 * MiB), target, DirtyReadMode.NoClear));
    }

    [Test]
    public void TheEmulatorRefusesWhatKvmRefuses()
    {
        using EmulatedKvmVm vm = Vm(manualProtect: true);
        var bitmap = new ulong[32];
        Assert.Multiple(() =>
        {
            Assert.That(() => vm.GetDirtyLog(0, bitmap), Throws.TypeOf<KernelException>().With.Property(nameof(KernelException.Errno)).EqualTo(Errno.ENOENT), "GET on a slot that does not log");
            Assert.That(() => vm.AddSlot(2, 4 * MiB, 4096), Throws.TypeOf<KernelException>().With.Property(nameof(KernelException.Errno)).EqualTo(Errno.EEXIST), "overlap");
            Assert.That(() => vm.AddSlot(0, 0, 4 * MiB), Throws.TypeOf<KernelException>().With.Property(nameof(KernelException.Errno)).EqualTo(Errno.EINVAL), "a slot resized in place");
            Assert.That(() => vm.AddSlot(3, 15 * MiB, 2 * MiB), Throws.TypeOf<KernelException>().With.Property(nameof(KernelException.Errno)).EqualTo(Errno.EINVAL), "outside memory");
        });

        vm.SetDirtyLogging(0, true);
        Assert.Multiple(() =>
        {
            Assert.That(() => vm.ClearDirtyLog(0, 32, 64, bitmap), Throws.TypeOf<KernelException>().With.Property(nameof(KernelException.Errno)).EqualTo(Errno.EINVAL), "first page not a multiple of 64");
            Assert.That(() => vm.ClearDirtyLog(0, 0, 100, bitmap), Throws.TypeOf<KernelException>().With.Property(nameof(KernelException.Errno)).EqualTo(Errno.EINVAL), "a count not a multiple of 64 short of the end");
            Assert.That(() => vm.ClearDirtyLog(0, 2048 - 64, 64, bitmap), Throws.Nothing, "a count up to the slot's end");
        });

        using var ring = new EmulatedKvmVm(16 * MiB, ringEntries: 1024);
        ring.AddSlot(0, 0, 4 * MiB);
        ring.SetDirtyLogging(0, true);
        Assert.That(() => ring.GetDirtyLog(0, bitmap), Throws.TypeOf<KernelException>().With.Property(nameof(KernelException.Errno)).EqualTo(Errno.ENXIO), "no bitmap in ring mode");
    }
}
