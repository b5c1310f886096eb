// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Mapping;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Mapping;

/// <summary>A device tracker behind the correlator: remaps, unplug, re-planning and its limits, one step at a time.</summary>
[TestFixture]
public class DeviceCorrelationTests : EmulatedIommuFixture
{
    private const ulong X = 0x4000_0000;

    private SparseDirtyBitmap _target = null!;
    private EmulatedDmaDevice _device = null!;
    private DeviceTracker _tracker = null!;
    private IoAddressSpace _space = null!;

    [SetUp]
    public void CreateDeviceSpace()
    {
        _target = new SparseDirtyBitmap(40);
        uint ioas = Iommu.AllocateIoas();
        _device = new EmulatedDmaDevice(Iommu.AllocateHwpt(ioas, dirtyTracking: false), DeviceDirtyLogLimits.Mlx5);
        _tracker = new DeviceTracker(_device);
        _space = new Correlator(_target).AddAddressSpace(ioas, new EmulatedIoMapBackend(Iommu, ioas, 4096));
        _space.Attach(_tracker);
    }

    [TearDown]
    public void DisposeDeviceSpace()
    {
        _tracker.Dispose();
        _device.Dispose();
        _target.Dispose();
    }

    private HashSet<ulong> Harvest()
    {
        _space.ReadDirty(_tracker, DirtyReadMode.Clear);
        var pages = new HashSet<ulong>();
        _target.HarvestInto(pages);
        return pages;
    }

    [Test]
    public void ARemapNeverAttributesOldDirtiesToTheNewPageOrNewOnesToTheOld()
    {
        const ulong P = 8 * MiB, Q = 16 * MiB;
        _space.Map(X, P, 4096);
        _tracker.StartTracking();
        _device.DmaWriteUInt64(X, 1);
        _space.Remap(X, 4096, Q);
        Assert.That(Harvest(), Is.EquivalentTo(new[] { P / 4096 }), "the write before the remap belongs to the old page");
        _device.DmaWriteUInt64(X, 2);
        Assert.That(Harvest(), Is.EquivalentTo(new[] { Q / 4096 }), "the write after it to the new one");
        Assert.That(Memory.ReadUInt64(P), Is.EqualTo(1UL));
        Assert.That(Memory.ReadUInt64(Q), Is.EqualTo(2UL));
    }

    [Test]
    public void AnUnplugSkipsTheSyncAndLeavesNoBitForALaterMappingOfTheIova()
    {
        const ulong P = 8 * MiB, Q = 16 * MiB;
        _space.Map(X, P, 4096);
        _tracker.StartTracking();
        _device.DmaWriteUInt64(X, 1);
        Assert.That(_space.Unmap(X, 4096, UnmapSync.Discard), Is.EqualTo(4096UL));
        _space.Map(X, Q, 4096);
        Assert.That(Harvest(), Is.Empty, "the unplugged page is not reported, and its bit did not move to the new page");
    }

    [Test]
    public void AMappingInANewBlockReArmsTheDeviceWithoutLosingWhatItLogged()
    {
        _space.Map(X, 8 * MiB, 4096);
        _tracker.StartTracking();
        _device.DmaWriteUInt64(X, 1);
        _space.Map(X + (3UL << 30), 12 * MiB, 4096); // three blocks away: outside the tracked ranges
        _device.DmaWriteUInt64(X + (3UL << 30), 2);
        HashSet<ulong> pages = Harvest();
        Assert.Multiple(() =>
        {
            Assert.That(_space.Rearms, Is.EqualTo(1));
            Assert.That(pages, Does.Contain(8 * MiB / 4096), "logged under the old ranges");
            Assert.That(pages, Does.Contain(12 * MiB / 4096), "logged under the new ones");
            Assert.That(_tracker.Coverage, Has.Some.Matches<AddressRange>(r => r.Start <= X + (3UL << 30) && X + (3UL << 30) < r.End));
        });
    }

    [Test]
    public void AMappingTheDeviceCannotTrackIsRefusedAndChangesNothing()
    {
        _space.Map(X, 8 * MiB, 4096);
        _tracker.StartTracking();
        IReadOnlyList<AddressRange> before = _tracker.Coverage;

        // mlx5 addresses 42 bits of IOVA.
        Assert.That(() => _space.Map(1UL << 43, 12 * MiB, 4096), Throws.TypeOf<DeviceTrackingPlanException>());
        Assert.Multiple(() =>
        {
            Assert.That(_space.GetMappings(), Has.Length.EqualTo(1));
            Assert.That(_tracker.Coverage, Is.EqualTo(before));
            Assert.That(_tracker.State, Is.EqualTo(DirtyTrackerState.Started));
            Assert.That(_space.TryTranslate(1UL << 43, out _), Is.False);
        });
        _device.DmaWriteUInt64(X, 1);
        Assert.That(Harvest(), Is.EquivalentTo(new[] { 8 * MiB / 4096 }));
    }

    [Test]
    public void APartialUnmapSplitsAMappingWhereTheBackendAllowsIt()
    {
        IoAddressSpace space = new Correlator(_target).AddAddressSpace(99, new SplittingBackend());
        space.Map(X, 0, 2 * MiB);
        Assert.That(space.Unmap(X + (16 * 4096), 32 * 4096), Is.EqualTo(32 * 4096UL));
        Assert.Multiple(() =>
        {
            Assert.That(space.GetMappings(), Is.EqualTo(new[] { new IovaMapping(X, 0, 16 * 4096), new IovaMapping(X + (48 * 4096), 48 * 4096, (2 * MiB) - (48 * 4096)) }));
            Assert.That(space.TryTranslate(X + (20 * 4096), out _), Is.False);
            Assert.That(space.TryTranslate(X + (50 * 4096), out ulong gpa) && gpa == 50 * 4096, Is.True);
        });
    }

    /// <summary>A backend with no hardware behind it that, unlike iommufd, can split mappings.</summary>
    private sealed class SplittingBackend : IIoMapBackend
    {
        public ulong IovaAlignment => 4096;

        public bool AllowsPartialUnmap => true;

        public void Map(ulong iova, ulong guestAddress, ulong length)
        {
        }

        public void Unmap(ulong iova, ulong length)
        {
        }
    }
}
