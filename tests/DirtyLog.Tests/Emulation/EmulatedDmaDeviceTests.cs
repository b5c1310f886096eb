// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using DirtyLog.Testing;
using DirtyLog.Native;
using DirtyLog.Tracking;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Emulation;

[TestFixture]
[Category("Unit")]
public class EmulatedDmaDeviceTests : EmulatedIommuFixture
{
    protected override ulong GuestBytes => 16 * MiB;

    [SetUp]
    public void MapTheFirst8MiB() => Iommu.Map(Ioas, 0, 0, 8 * MiB, 4 * KiB);

    private static DirtyLog.Native.Errno Errno(Action call) => Assert.Throws<KernelException>(() => call())!.Errno;

    [Test]
    public void StartRejectsWhatTheKernelRejects()
    {
        var device = new EmulatedDmaDevice(Hwpt);
        AddressRange[] tooMany = Enumerable.Range(0, 257).Select(i => new AddressRange((ulong)i * 8192, 4096)).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(Errno(() => device.StartLogging([], 4096)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL), "no range");
            Assert.That(Errno(() => device.StartLogging(tooMany, 4096)), Is.EqualTo(DirtyLog.Native.Errno.E2BIG), "257 ranges");
            Assert.That(Errno(() => device.StartLogging([new AddressRange(100, 4096)], 4096)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL), "unaligned");
            Assert.That(Errno(() => device.StartLogging([new AddressRange(0, 8192), new AddressRange(4096, 8192)], 4096)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL), "overlapping");
            Assert.That(device.IsLogging, Is.False);
        });
        device.StartLogging([new AddressRange(0, 1 * MiB)], 4096);
        Assert.That(Errno(() => device.StartLogging([new AddressRange(0, 1 * MiB)], 4096)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL), "a second START");
    }

    [Test]
    public void TheDeviceRoundsThePageSizeFoldsRangesAndEnforcesItsAddressWidth()
    {
        var device = new EmulatedDmaDevice(Hwpt, new DeviceDirtyLogLimits { MaxRanges = 2, MinPageSize = 16 * 1024, AddressWidth = 30 });
        ulong granted = device.StartLogging([new AddressRange(0, 64 * KiB), new AddressRange(128 * KiB, 64 * KiB), new AddressRange(4 * MiB, 64 * KiB)], 4096);
        Assert.Multiple(() =>
        {
            Assert.That(granted, Is.EqualTo(16 * KiB));
            Assert.That(device.TrackedRanges, Is.EqualTo(new[] { new AddressRange(0, 192 * KiB), new AddressRange(4 * MiB, 64 * KiB) }));
        });
        device.StopLogging();
        Assert.That(Errno(() => device.StartLogging([new AddressRange(1UL << 30, 64 * KiB)], 16 * 1024)), Is.EqualTo(DirtyLog.Native.Errno.EOPNOTSUPP));
    }

    [Test]
    public void ReportIsReadAndClearWithinTheStartedRangesOnlyAndTheLogSurvivesAnUnmap()
    {
        var device = new EmulatedDmaDevice(Hwpt);
        device.StartLogging([new AddressRange(0, 1 * MiB)], 4096);
        device.DmaWriteUInt64(12 * KiB, 1);
        device.DmaWriteUInt64(2 * MiB, 2); // outside the started ranges: not logged
        Iommu.Unmap(Ioas, 0, 8 * MiB);
        ulong[] bitmap = new ulong[16], again = new ulong[16], outside = new ulong[1];
        device.Report(0, 1 * MiB, 4096, bitmap);
        device.Report(0, 1 * MiB, 4096, again);
        device.Report(2 * MiB, 64 * KiB, 4096, outside);
        Assert.Multiple(() =>
        {
            Assert.That(bitmap[0], Is.EqualTo(1UL << 3), "logged before the unmap, reported after it");
            Assert.That(again, Is.All.Zero, "REPORT cleared it");
            Assert.That(outside[0], Is.Zero);
        });
    }

    [Test]
    public void ACoarseDeviceGranuleSetsEveryReportBitItCovers()
    {
        var device = new EmulatedDmaDevice(Hwpt, new DeviceDirtyLogLimits { MinPageSize = 64 * 1024 });
        device.StartLogging([new AddressRange(0, 1 * MiB)], 4096);
        device.DmaWriteUInt64(70 * KiB, 1);
        ulong[] bitmap = new ulong[4];
        device.Report(0, 1 * MiB, 4096, bitmap);
        Assert.Multiple(() =>
        {
            Assert.That(bitmap[0], Is.EqualTo(0xFFFFUL << 16), "the second 64 KiB granule: bits 16..31");
            Assert.That(bitmap[1..], Is.All.Zero);
        });
    }

    [Test]
    public void ADeviceErrorIsStickyUntilStopAndStart()
    {
        var device = new EmulatedDmaDevice(Hwpt);
        device.StartLogging([new AddressRange(0, 1 * MiB)], 4096);
        device.InjectDeviceError();
        ulong[] bitmap = new ulong[4];
        Assert.Multiple(() =>
        {
            Assert.That(Errno(() => device.Report(0, 64 * KiB, 4096, bitmap)), Is.EqualTo(DirtyLog.Native.Errno.EIO));
            Assert.That(Errno(() => device.Report(0, 64 * KiB, 4096, bitmap)), Is.EqualTo(DirtyLog.Native.Errno.EIO), "still failing");
        });
        device.StopLogging();
        device.StartLogging([new AddressRange(0, 1 * MiB)], 4096);
        Assert.That(() => device.Report(0, 64 * KiB, 4096, bitmap), Throws.Nothing);
    }

    [Test]
    public void ReportRejectsBadPageSizesAndAStoppedLog()
    {
        var device = new EmulatedDmaDevice(Hwpt);
        ulong[] bitmap = new ulong[4];
        Assert.That(Errno(() => device.Report(0, 64 * KiB, 4096, bitmap)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL), "not started");
        device.StartLogging([new AddressRange(0, 1 * MiB)], 4096);
        Assert.Multiple(() =>
        {
            Assert.That(Errno(() => device.Report(0, 64 * KiB, 2048, bitmap)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL));
            Assert.That(Errno(() => device.Report(0, 64 * KiB, 12288, bitmap)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL));
            Assert.That(Errno(() => device.Report(ulong.MaxValue - 4095, 8192, 4096, bitmap)), Is.EqualTo(DirtyLog.Native.Errno.EOVERFLOW));
        });
    }

    [Test]
    public void ADeviceWithoutLoggingAnswersEnotty()
    {
        var device = new EmulatedDmaDevice(Hwpt, supportsLogging: false);
        Assert.Multiple(() =>
        {
            Assert.That(device.IsSupported, Is.False);
            Assert.That(Errno(() => device.StartLogging([new AddressRange(0, 4096)], 4096)), Is.EqualTo(DirtyLog.Native.Errno.ENOTTY));
        });
    }
}
