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
public class DeviceCorrelationTests : DeviceSpaceFixture
{
    private const ulong X = 0x4000_0000;

    private HashSet<ulong> Harvest()
    {
        Space.ReadDirty(Tracker, DirtyReadMode.Clear);
        var pages = new HashSet<ulong>();
        Target.HarvestInto(pages);
        return pages;
    }

    [Test]
    public void ARemapNeverAttributesOldDirtiesToTheNewPageOrNewOnesToTheOld()
    {
        const ulong P = 8 * MiB, Q = 16 * MiB;
        Space.Map(X, P, 4096);
        Tracker.StartTracking();
        Device.DmaWriteUInt64(X, 1);
        Space.Remap(X, 4096, Q);
        Assert.That(Harvest(), Is.EquivalentTo(new[] { P / 4096 }), "the write before the remap belongs to the old page");
        Device.DmaWriteUInt64(X, 2);
        Assert.That(Harvest(), Is.EquivalentTo(new[] { Q / 4096 }), "the write after it to the new one");
        Assert.That(Memory.ReadUInt64(P), Is.EqualTo(1UL));
        Assert.That(Memory.ReadUInt64(Q), Is.EqualTo(2UL));
    }

    [Test]
    public void AnUnplugSkipsTheSyncAndLeavesNoBitForALaterMappingOfTheIova()
    {
        const ulong P = 8 * MiB, Q = 16 * MiB;
        Space.Map(X, P, 4096);
        Tracker.StartTracking();
        Device.DmaWriteUInt64(X, 1);
        Assert.That(Space.Unmap(X, 4096, UnmapSync.Discard), Is.EqualTo(4096UL));
        Space.Map(X, Q, 4096);
        Assert.That(Harvest(), Is.Empty, "the unplugged page is not reported, and its bit did not move to the new page");
    }

    [Test]
    public void AMappingInANewBlockReArmsTheDeviceWithoutLosingWhatItLogged()
    {
        Space.Map(X, 8 * MiB, 4096);
        Tracker.StartTracking();
        Device.DmaWriteUInt64(X, 1);
        Space.Map(X + (3UL << 30), 12 * MiB, 4096); // three blocks away: outside the tracked ranges
        Device.DmaWriteUInt64(X + (3UL << 30), 2);
        HashSet<ulong> pages = Harvest();
        Assert.Multiple(() =>
        {
            Assert.That(Space.Rearms, Is.EqualTo(1));
            Assert.That(pages, Does.Contain(8 * MiB / 4096), "logged under the old ranges");
            Assert.That(pages, Does.Contain(12 * MiB / 4096), "logged under the new ones");
            Assert.That(Tracker.Coverage, Has.Some.Matches<AddressRange>(r => r.Start <= X + (3UL << 30) && X + (3UL << 30) < r.End));
        });
    }

    [Test]
    public void AMappingTheDeviceCannotTrackIsRefusedAndChangesNothing()
    {
        Space.Map(X, 8 * MiB, 4096);
        Tracker.StartTracking();
        IReadOnlyList<AddressRange> before = Tracker.Coverage;

        // mlx5 addresses 42 bits of IOVA.
        Assert.That(() => Space.Map(1UL << 43, 12 * MiB, 4096), Throws.TypeOf<DeviceTrackingPlanException>());
        Assert.Multiple(() =>
        {
            Assert.That(Space.GetMappings(), Has.Length.EqualTo(1));
            Assert.That(Tracker.Coverage, Is.EqualTo(before));
            Assert.That(Tracker.State, Is.EqualTo(DirtyTrackerState.Started));
            Assert.That(Space.TryTranslate(1UL << 43, out _), Is.False);
        });
        Device.DmaWriteUInt64(X, 1);
        Assert.That(Harvest(), Is.EquivalentTo(new[] { 8 * MiB / 4096 }));
    }

    [Test]
    public void APartialUnmapSplitsAMappingWhereTheBackendAllowsIt()
    {
        IoAddressSpace space = new Correlator(Target).AddAddressSpace(99, new SplittingBackend());
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
