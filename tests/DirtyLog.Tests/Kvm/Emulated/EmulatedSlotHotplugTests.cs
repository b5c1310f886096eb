// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm.Emulated;

/// <summary>
/// Memory slots added, removed and moved while a VM-wide dirty-log tracker tracks (memory hotplug and unplug during a
/// migration): a removed slot is harvested before it goes, an added one is reported whole, and nothing is lost.
/// </summary>
[TestFixture]
[Category("Unit")]
public class EmulatedSlotHotplugTests
{
    private const ulong MiB = 1UL << 20;
    private const ulong Page = 4096;

    private static HashSet<ulong> Read(KvmDirtyLogTracker tracker, DirtyReadMode mode = DirtyReadMode.Clear)
    {
        using var target = new SparseDirtyBitmap(40);
        foreach (AddressRange range in tracker.Coverage)
        {
            tracker.ReadDirty(range, target, mode);
        }

        var pages = new HashSet<ulong>();
        target.HarvestInto(pages);
        return pages;
    }

    private static IEnumerable<ulong> PagesOf(ulong start, ulong length) =>
        Enumerable.Range(0, (int)(length / Page)).Select(p => (start / Page) + (ulong)p);

    [TestCase(false)]
    [TestCase(true)]
    public void ARemovedSlotIsHarvestedFirstAndAnAddedOneIsReportedWhole(bool manualProtect)
    {
        using var vm = new EmulatedKvmVm(32 * MiB, manualProtect: manualProtect);
        vm.AddSlot(0, 0, 8 * MiB);
        vm.AddSlot(1, 8 * MiB, 8 * MiB);
        using var tracker = new KvmDirtyLogTracker(vm, "vm");
        tracker.StartTracking();
        vm.Vcpus[0].Run([8, (9 * MiB) + 8, (12 * MiB) + 8], 1, out _);

        vm.DeleteSlot(1);                 // unplugged: written pages 9 MiB and 12 MiB must still be reported
        vm.AddSlot(2, 16 * MiB, 4 * MiB); // plugged: never sent, so all of it
        Assert.Multiple(() =>
        {
            Assert.That(vm.GetSlots().Single(s => s.Id == 2).LogDirtyPages, Is.True, "the tracker logs the new slot");
            Assert.That(tracker.Coverage, Does.Contain(new AddressRange(8 * MiB, 8 * MiB)), "the removed slot stays covered until read");
        });

        vm.Vcpus[0].Run([(17 * MiB) + 8], 2, out _);
        HashSet<ulong> first = Read(tracker);
        var expected = new HashSet<ulong> { 0, 9 * MiB / Page, 12 * MiB / Page };
        expected.UnionWith(PagesOf(16 * MiB, 4 * MiB));
        Assert.That(first, Is.EquivalentTo(expected));

        Assert.Multiple(() =>
        {
            Assert.That(tracker.Coverage, Is.EqualTo(new[] { new AddressRange(0, 8 * MiB), new AddressRange(16 * MiB, 4 * MiB) }), "read, the removed slot is gone");
            Assert.That(Read(tracker), Is.Empty, "reported once");
        });

        vm.Vcpus[0].Run([(18 * MiB) + 8], 3, out _);
        Assert.That(Read(tracker), Is.EquivalentTo(new[] { 18 * MiB / Page }), "then only what is written");
    }

    [Test]
    public void ASlotMovedWhileTrackingIsHarvestedAtItsOldAddressAndReportedWholeAtItsNewOne()
    {
        using var vm = new EmulatedKvmVm(32 * MiB);
        vm.AddSlot(0, 0, 8 * MiB);
        using var tracker = new KvmDirtyLogTracker(vm, 0);
        tracker.StartTracking();
        vm.Vcpus[0].Run([(3 * MiB) + 8], 1, out _);

        vm.DeleteSlot(0);
        vm.AddSlot(0, 24 * MiB, 8 * MiB);
        var expected = new HashSet<ulong>(PagesOf(24 * MiB, 8 * MiB)) { 3 * MiB / Page };
        Assert.That(Read(tracker), Is.EquivalentTo(expected));
    }

    [Test]
    public void SlotChangesWhileStoppedNeitherLogNorReport()
    {
        using var vm = new EmulatedKvmVm(32 * MiB);
        vm.AddSlot(0, 0, 8 * MiB);
        using var tracker = new KvmDirtyLogTracker(vm, "vm");
        vm.AddSlot(1, 8 * MiB, 8 * MiB);
        Assert.That(vm.GetSlots().Select(s => s.LogDirtyPages), Is.All.False);

        tracker.StartTracking();
        Assert.That(vm.GetSlots().Select(s => s.LogDirtyPages), Is.All.True, "starting logs every slot there is");
        Assert.That(Read(tracker), Is.Empty, "a slot present at the start is the first pass's, not dirty");
        tracker.StopTracking();
        vm.DeleteSlot(1);
        Assert.That(tracker.Coverage, Is.EqualTo(new[] { new AddressRange(0, 8 * MiB) }));
    }

    [Test]
    public void ADisposedTrackerHearsNoMoreSlotChanges()
    {
        using var vm = new EmulatedKvmVm(32 * MiB);
        vm.AddSlot(0, 0, 8 * MiB);
        var tracker = new KvmDirtyLogTracker(vm, "vm");
        tracker.StartTracking();
        tracker.Dispose();
        vm.AddSlot(1, 8 * MiB, 8 * MiB);
        Assert.That(vm.GetSlots().Single(s => s.Id == 1).LogDirtyPages, Is.False, "no one logs it");
    }
}
