// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Tracking;

[TestFixture]
[Category("Unit")]
public class DeviceTrackerTests : EmulatedIommuFixture
{
    protected override ulong GuestBytes => 16 * MiB;

    [SetUp]
    public void MapTheFirst8MiB() => Iommu.Map(Ioas, 0, 0, 8 * MiB, 4 * KiB);

    [Test]
    public void ItStartsWithItsPlanReadsAtTheGrantedPageSizeAndClears()
    {
        var device = new EmulatedDmaDevice(Hwpt, new DeviceDirtyLogLimits { MinPageSize = 16 * 1024 });
        using var tracker = new DeviceTracker(device);
        tracker.SetMappedRanges([new AddressRange(0, 1 * MiB), new AddressRange(4 * MiB, 1 * MiB)]);
        tracker.StartTracking();
        device.DmaWriteUInt64(20 * KiB, 1);
        device.DmaWriteUInt64((4 * MiB) + 4096, 2);
        using var pages = new SparseDirtyBitmap(48);
        Assert.Multiple(() =>
        {
            Assert.That(tracker.PageSize, Is.EqualTo(16 * 1024), "the granted size");
            Assert.That(tracker.ReadDirty(new AddressRange(0, 8 * MiB), pages, DirtyReadMode.Clear), Is.EqualTo(2));
            Assert.That(tracker.ReadDirty(new AddressRange(0, 8 * MiB), pages, DirtyReadMode.Clear), Is.Zero, "REPORT cleared");
            Assert.That(pages.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(4, 4), new DirtyRun(1024, 4) }), "whole 16 KiB granules in 4 KiB pages");
        });
    }

    [Test]
    public void ItCannotReadWithoutClearing()
    {
        var device = new EmulatedDmaDevice(Hwpt);
        using var tracker = new DeviceTracker(device);
        tracker.SetMappedRanges([new AddressRange(0, 1 * MiB)]);
        tracker.StartTracking();
        using var pages = new SparseDirtyBitmap(48);
        Assert.Multiple(() =>
        {
            Assert.That(tracker.CanReadWithoutClear, Is.False);
            Assert.That(() => tracker.ReadDirty(new AddressRange(0, 1 * MiB), pages, DirtyReadMode.NoClear), Throws.TypeOf<NotSupportedException>());
        });
    }

    [Test]
    public void APlanTheDeviceCannotFollowIsRefusedBeforeAnythingStarts()
    {
        var device = new EmulatedDmaDevice(Hwpt, DeviceDirtyLogLimits.Mlx5);
        using var tracker = new DeviceTracker(device);
        tracker.SetMappedRanges([new AddressRange(0, 1 * MiB), new AddressRange(1UL << 45, 1 * MiB)]);
        Assert.That(() => tracker.Plan(), Throws.TypeOf<DeviceTrackingPlanException>().With.Message.Contains("42-bit"));
        var error = Assert.Throws<DirtyTrackerException>(() => tracker.StartTracking())!;
        Assert.Multiple(() =>
        {
            Assert.That(error.Message, Does.Contain("42-bit"));
            Assert.That(error.InnerException, Is.TypeOf<DeviceTrackingPlanException>());
            Assert.That(device.IsLogging, Is.False, "nothing was started");
            Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Stopped));
        });
    }

    [Test]
    public void ManyMappingsAreFoldedToTheDeviceLimitAndNothingWrittenIsLost()
    {
        var device = new EmulatedDmaDevice(Hwpt, new DeviceDirtyLogLimits { MaxRanges = 4 });
        using var tracker = new DeviceTracker(device);
        var mapped = new AddressRange[40];
        for (int i = 0; i < mapped.Length; i++)
        {
            mapped[i] = new AddressRange((ulong)i * 128 * KiB, 64 * KiB);
        }

        tracker.SetMappedRanges(mapped);
        tracker.StartTracking();
        foreach (AddressRange r in mapped)
        {
            device.DmaWriteUInt64(r.Start + 8192, 1);
        }

        using var pages = new SparseDirtyBitmap(48);
        Assert.Multiple(() =>
        {
            Assert.That(device.TrackedRanges, Has.Count.LessThanOrEqualTo(4));
            Assert.That(tracker.ReadDirty(new AddressRange(0, 8 * MiB), pages, DirtyReadMode.Clear), Is.EqualTo(40));
        });
    }

    [Test]
    public void ASickDeviceFaultsTheTrackerWithTheCauseAndStopRecoversIt()
    {
        var device = new EmulatedDmaDevice(Hwpt);
        using var tracker = new DeviceTracker(device);
        tracker.SetMappedRanges([new AddressRange(0, 1 * MiB)]);
        tracker.StartTracking();
        device.InjectDeviceError();
        using var pages = new SparseDirtyBitmap(48);
        Assert.That(() => tracker.ReadDirty(new AddressRange(0, 1 * MiB), pages, DirtyReadMode.Clear),
            Throws.TypeOf<DirtyTrackerException>().With.Message.Contains("EIO"));
        Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Faulted));
        tracker.StopTracking();
        Assert.That(device.IsLogging, Is.False, "stop after a failure stops the device");
        tracker.StartTracking();
        Assert.That(tracker.ReadDirty(new AddressRange(0, 1 * MiB), pages, DirtyReadMode.Clear), Is.Zero);
    }

    [Test]
    public void ADeviceWithoutLoggingIsRefusedAtStart()
    {
        var device = new EmulatedDmaDevice(Hwpt, supportsLogging: false);
        using var tracker = new DeviceTracker(device);
        tracker.SetMappedRanges([new AddressRange(0, 1 * MiB)]);
        Assert.That(() => tracker.StartTracking(), Throws.TypeOf<DirtyTrackerException>().With.Message.Contains("no DMA dirty logging"));
    }
}
