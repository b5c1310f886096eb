// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Mapping;
using DirtyLog.Native;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Mapping;

/// <summary>
/// Map changes the backend refuses leave everything as it was: the table, the device trackers' ranges, and for a
/// remap the old translation, still in force and still tracked.
/// </summary>
[TestFixture]
public class MapRollbackTests : DeviceSpaceFixture
{
    private const ulong X = 0x4000_0000, GiB = 1UL << 30;

    [Test]
    public void AMapTheBackendRefusesLeavesTheDeviceRangesAndTheTableAsTheyWere()
    {
        Space.Map(X, 8 * MiB, 4096);
        Tracker.StartTracking();
        AddressRange[] rangesBefore = [.. Tracker.MappedRanges];
        IovaMapping[] mappingsBefore = Space.GetMappings();

        // A new 1 GiB block of IOVA onto guest memory the backend does not have: refused with ENOENT/EFAULT.
        Assert.Throws<KernelException>(() => Space.Map(5 * GiB, 256 * MiB, 4096));

        Assert.Multiple(() =>
        {
            Assert.That(Tracker.MappedRanges, Is.EqualTo(rangesBefore), "the device's ranges were extended by the refused map");
            Assert.That(Space.GetMappings(), Is.EqualTo(mappingsBefore));
            Assert.That(Tracker.State, Is.EqualTo(DirtyTrackerState.Started));
            Assert.That(Space.Rearms, Is.Zero);
        });
    }

    [Test]
    public void ARemapTheBackendRefusesKeepsTheOldTranslationMappedAndTracked()
    {
        const ulong P = 8 * MiB;
        Space.Map(X, P, 4096);
        Tracker.StartTracking();
        IovaMapping[] before = Space.GetMappings();

        Assert.Throws<KernelException>(() => Space.Remap(X, 4096, 256 * MiB));

        Assert.That(Space.GetMappings(), Is.EqualTo(before), "the old translation was lost");
        Assert.That(Device.DmaWriteUInt64(X, 7), Is.True, "DMA to the IOVA still reaches the old page");
        Space.ReadDirty(Tracker, DirtyReadMode.Clear);
        var pages = new HashSet<ulong>();
        Target.HarvestInto(pages);
        Assert.Multiple(() =>
        {
            Assert.That(Memory.ReadUInt64(P), Is.EqualTo(7UL));
            Assert.That(pages, Does.Contain(P / 4096), "a write after the refused remap is tracked on the old page");
        });
    }

    [Test]
    public void AnUnmapTheBackendRefusesKeepsTheMappingAndLosesNoDirtyPage()
    {
        const ulong P = 8 * MiB;
        uint ioas = Iommu.AllocateIoas();
        EmulatedHwpt hwpt = Iommu.AllocateHwpt(ioas, dirtyTracking: true);
        var backend = new RefusingBackend(new EmulatedIoMapBackend(Iommu, ioas, 4096));
        IoAddressSpace space = new Correlator(Target).AddAddressSpace(ioas, backend);
        using var iommu = new IommuTracker(hwpt);
        space.Attach(iommu);
        space.Map(X, P, 4096);
        iommu.StartTracking();
        Assert.That(hwpt.DmaWriteUInt64(X, 1), Is.True);

        backend.RefuseNextUnmap = true;
        Assert.Throws<InvalidOperationException>(() => space.Unmap(X, 4096));

        Assert.That(space.GetMappings(), Is.EqualTo(new[] { new IovaMapping(X, P, 4096) }));
        space.ReadDirty(iommu, DirtyReadMode.Clear);
        var pages = new HashSet<ulong>();
        Target.HarvestInto(pages);
        Assert.That(pages, Does.Contain(P / 4096), "the write before the refused unmap is still reported");
        Assert.That(space.Unmap(X, 4096), Is.EqualTo(4096UL), "a later unmap goes through");
    }

    [Test]
    public void AnAddressSpaceOverASixtyFourBitBitmapAcceptsMaps()
    {
        using var wide = new SparseDirtyBitmap(64);
        uint ioas = Iommu.AllocateIoas();
        EmulatedHwpt hwpt = Iommu.AllocateHwpt(ioas, dirtyTracking: true);
        IoAddressSpace space = new Correlator(wide).AddAddressSpace(ioas, new EmulatedIoMapBackend(Iommu, ioas));
        using var iommu = new IommuTracker(hwpt);
        space.Attach(iommu);

        space.Map(X, 4 * MiB, 64 * 1024);
        iommu.StartTracking();
        Assert.That(hwpt.DmaWriteUInt64(X + 4096, 1), Is.True);
        Assert.That(space.ReadDirty(iommu, DirtyReadMode.Clear), Is.EqualTo(1UL));
        Assert.That(wide.HarvestRuns().Select(r => r.FirstPage), Is.EqualTo(new[] { (4 * MiB + 4096) / 4096 }));
    }

    /// <summary>A backend that refuses the next unmap, as iommufd does when a range is pinned or busy.</summary>
    private sealed class RefusingBackend(IIoMapBackend inner) : IIoMapBackend
    {
        public bool RefuseNextUnmap { get; set; }

        public ulong IovaAlignment => inner.IovaAlignment;

        public bool AllowsPartialUnmap => inner.AllowsPartialUnmap;

        public void Map(ulong iova, ulong guestAddress, ulong length) => inner.Map(iova, guestAddress, length);

        public void Unmap(ulong iova, ulong length)
        {
            if (RefuseNextUnmap)
            {
                RefuseNextUnmap = false;
                throw new InvalidOperationException("unmap refused");
            }

            inner.Unmap(iova, length);
        }
    }
}
