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
public class IommuTrackerTests : EmulatedIommuFixture
{

    private IommuTracker Started(params AddressRange[] mapped)
    {
        var tracker = new IommuTracker(Hwpt);
        tracker.SetMappedRanges(mapped);
        tracker.StartTracking();
        return tracker;
    }

    [Test]
    public void ItReadsEachMappedRangeSoAHoleLosesNothing()
    {
        Iommu.Map(Ioas, 0, 0, 64 * KiB, 4 * KiB);
        Iommu.Map(Ioas, 1 * MiB, 1 * MiB, 64 * KiB, 4 * KiB);
        using IommuTracker tracker = Started(new AddressRange(0, 64 * KiB), new AddressRange(1 * MiB, 64 * KiB));
        Hwpt.DmaWriteUInt64(8 * KiB, 1);
        Hwpt.DmaWriteUInt64((1 * MiB) + (12 * KiB), 2);
        using var iovaPages = new SparseDirtyBitmap(48);
        ulong granules = tracker.ReadDirty(new AddressRange(0, 2 * MiB), iovaPages, DirtyReadMode.Clear);
        Assert.Multiple(() =>
        {
            Assert.That(granules, Is.EqualTo(2));
            Assert.That(iovaPages.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(2, 1), new DirtyRun(256 + 3, 1) }));
        });
    }

    [Test]
    public void ANoClearReadLeavesThePagesForTheNextRead()
    {
        Iommu.Map(Ioas, 0, 0, 1 * MiB, 4 * KiB);
        using IommuTracker tracker = Started(new AddressRange(0, 1 * MiB));
        Hwpt.DmaWriteUInt64(40 * KiB, 1);
        using var pages = new SparseDirtyBitmap(48);
        Assert.Multiple(() =>
        {
            Assert.That(tracker.ReadDirty(new AddressRange(0, 1 * MiB), pages, DirtyReadMode.NoClear), Is.EqualTo(1));
            Assert.That(tracker.ReadDirty(new AddressRange(0, 1 * MiB), pages, DirtyReadMode.Clear), Is.EqualTo(1));
            Assert.That(tracker.ReadDirty(new AddressRange(0, 1 * MiB), pages, DirtyReadMode.Clear), Is.Zero);
            Assert.That(pages.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(10, 1) }));
        });
    }

    [Test]
    public void ACoarseGranuleMarksEveryTargetPageItCovers()
    {
        Iommu.Map(Ioas, 0, 0, 4 * MiB, 2 * MiB);
        var tracker = new IommuTracker(Hwpt, pageSize: (long)(64 * KiB));
        using (tracker)
        {
            tracker.SetMappedRanges([new AddressRange(0, 4 * MiB)]);
            tracker.StartTracking();
            Hwpt.DmaWriteUInt64(3 * MiB, 7); // dirties the second 2 MiB entry
            using var pages = new SparseDirtyBitmap(48);
            Assert.Multiple(() =>
            {
                Assert.That(tracker.ReadDirty(new AddressRange(0, 4 * MiB), pages, DirtyReadMode.Clear), Is.EqualTo(32), "32 granules of 64 KiB");
                Assert.That(pages.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(512, 512) }));
            });
        }
    }

    [Test]
    public void StartAndStopAreIdempotentAndReadsNeedAStartedTracker()
    {
        Iommu.Map(Ioas, 0, 0, 64 * KiB, 4 * KiB);
        using var tracker = new IommuTracker(Hwpt);
        using var pages = new SparseDirtyBitmap(48);
        Assert.That(() => tracker.ReadDirty(new AddressRange(0, 4096), pages, DirtyReadMode.Clear), Throws.InvalidOperationException);
        tracker.StartTracking();
        tracker.StartTracking();
        Assert.That(Hwpt.DirtyTrackingEnabled, Is.True);
        tracker.StopTracking();
        tracker.StopTracking();
        Assert.Multiple(() =>
        {
            Assert.That(Hwpt.DirtyTrackingEnabled, Is.False);
            Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Stopped));
        });
    }

    [Test]
    public void AFailedStartLeavesNothingStartedAndSaysWhy()
    {
        EmulatedHwpt plain = Iommu.AllocateHwpt(Ioas, dirtyTracking: false);
        using var tracker = new IommuTracker(plain);
        var error = Assert.Throws<DirtyTrackerException>(() => tracker.StartTracking())!;
        Assert.Multiple(() =>
        {
            Assert.That(error.Message, Does.Contain("could not start").And.Contain("EOPNOTSUPP"));
            Assert.That(error.Tracker, Is.EqualTo(tracker.Name));
            Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Stopped));
        });
    }

    [Test]
    public void AFailedReadFaultsTheTrackerUntilItIsStopped()
    {
        Iommu.Map(Ioas, 0, 0, 64 * KiB, 4 * KiB);
        using IommuTracker tracker = Started(new AddressRange(0, 64 * KiB));
        using var pages = new SparseDirtyBitmap(48);
        Hwpt.FailNextReports(DirtyLog.Native.Errno.EIO);
        var error = Assert.Throws<DirtyTrackerException>(() => tracker.ReadDirty(new AddressRange(0, 64 * KiB), pages, DirtyReadMode.Clear))!;
        Assert.Multiple(() =>
        {
            Assert.That(error.Message, Does.Contain("treat its coverage as dirty").And.Contain("EIO"));
            Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Faulted));
            Assert.That(() => tracker.StartTracking(), Throws.InvalidOperationException, "a faulted tracker must be stopped first");
        });
        tracker.StopTracking();
        tracker.StartTracking();
        Assert.That(tracker.ReadDirty(new AddressRange(0, 64 * KiB), pages, DirtyReadMode.Clear), Is.Zero);
    }

    [Test]
    public void BadArgumentsAreRejectedWithoutTouchingTheTracker()
    {
        Iommu.Map(Ioas, 0, 0, 64 * KiB, 4 * KiB);
        using IommuTracker tracker = Started(new AddressRange(0, 64 * KiB));
        using var hugePages = new SparseDirtyBitmap(48, 2 * 1024 * 1024);
        using var pages = new SparseDirtyBitmap(48);
        Assert.Multiple(() =>
        {
            Assert.That(() => tracker.ReadDirty(new AddressRange(0, 4096), hugePages, DirtyReadMode.Clear), Throws.ArgumentException.With.Message.Contains("larger"));
            Assert.That(() => tracker.ReadDirty(new AddressRange(100, 4096), pages, DirtyReadMode.Clear), Throws.ArgumentException.With.Message.Contains("aligned"));
            Assert.That(() => tracker.SetMappedRanges([new AddressRange(0, 8192), new AddressRange(4096, 8192)]), Throws.ArgumentException.With.Message.Contains("overlaps"));
            Assert.That(() => tracker.SetMappedRanges([new AddressRange(100, 4096)]), Throws.ArgumentException.With.Message.Contains("aligned"));
            Assert.That(tracker.Coverage, Is.EqualTo(new[] { new AddressRange(0, 64 * KiB) }), "a refused update keeps the ranges in force");
            Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Started));
        });
    }

    [Test]
    public void AdjacentMappedRangesAreJoined()
    {
        using var tracker = new IommuTracker(Hwpt);
        tracker.SetMappedRanges([new AddressRange(8192, 4096), new AddressRange(0, 8192), new AddressRange(1 * MiB, 4096)]);
        Assert.That(tracker.Coverage, Is.EqualTo(new[] { new AddressRange(0, 12288), new AddressRange(1 * MiB, 4096) }));
    }

    [Test]
    public void ASinkReceivesEachChunkWithItsAddressAndGranule()
    {
        Iommu.Map(Ioas, 0, 0, 64 * KiB, 4 * KiB);
        Iommu.Map(Ioas, 1 * MiB, 1 * MiB, 64 * KiB, 4 * KiB);
        using IommuTracker tracker = Started(new AddressRange(0, 64 * KiB), new AddressRange(1 * MiB, 64 * KiB));
        Hwpt.DmaWriteUInt64(8 * KiB, 1);
        Hwpt.DmaWriteUInt64((1 * MiB) + (12 * KiB), 2);
        var sink = new RecordingSink();
        ulong granules = tracker.ReadDirty(new AddressRange(0, 2 * MiB), sink, DirtyReadMode.Clear);
        Assert.Multiple(() =>
        {
            Assert.That(granules, Is.EqualTo(2));
            Assert.That(sink.Chunks, Is.EqualTo(new[] { (0UL, 4096L, 1UL << 2, 16UL), (1 * MiB, 4096L, 1UL << 3, 16UL) }));
        });
    }

    private sealed class RecordingSink : IDirtyGranuleSink
    {
        public System.Collections.Generic.List<(ulong Address, long Granule, ulong FirstWord, ulong Bits)> Chunks { get; } = new();

        public void Accept(ulong address, long granuleSize, ReadOnlySpan<ulong> bitmap, ulong bitCount) =>
            Chunks.Add((address, granuleSize, bitmap[0], bitCount));
    }
}
