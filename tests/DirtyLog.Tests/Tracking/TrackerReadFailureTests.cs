// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Tracking;

/// <summary>
/// A read that fails must not forget: bad arguments are refused before the log is consumed, and a failure found
/// only after consuming it faults the tracker, so that its coverage is treated as dirty.
/// </summary>
[TestFixture]
public class TrackerReadFailureTests
{
    private const ulong GiB = 1UL << 30;

    [Test]
    public void AReadIntoATargetTooSmallForTheRangeIsRefusedBeforeAnythingIsConsumed()
    {
        using var tracker = new EmulatedTracker("t", new AddressRange(0, 4 * GiB));
        tracker.StartTracking();
        Assert.That(tracker.Write(3 * GiB), Is.True);
        using var small = new SparseDirtyBitmap(addressWidth: 30); // 1 GiB: page 3 GiB does not fit

        Assert.Throws<ArgumentException>(() => tracker.ReadDirty(new AddressRange(0, 4 * GiB), small, DirtyReadMode.Clear));

        using var large = new SparseDirtyBitmap(addressWidth: 40);
        Assert.Multiple(() =>
        {
            Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Started));
            Assert.That(tracker.ReadDirty(new AddressRange(0, 4 * GiB), large, DirtyReadMode.Clear), Is.EqualTo(1UL), "the page is still there");
            Assert.That(large.CountRange(3 * GiB / 4096, 1), Is.EqualTo(1UL));
        });
    }

    [Test]
    public void ARangeBeyondTheTargetButOutsideTheCoverageIsAccepted()
    {
        using var tracker = new EmulatedTracker("t", new AddressRange(0, GiB / 2));
        tracker.StartTracking();
        tracker.Write(4096);
        using var small = new SparseDirtyBitmap(addressWidth: 30);
        Assert.That(tracker.ReadDirty(new AddressRange(0, 16 * GiB), small, DirtyReadMode.Clear), Is.EqualTo(1UL),
            "only what the tracker covers has to fit the target");
    }

    [Test]
    public void ASinkThatFailsAfterTheLogWasConsumedFaultsTheTracker()
    {
        using var tracker = new EmulatedTracker("t", new AddressRange(0, GiB));
        tracker.StartTracking();
        tracker.Write(8192);

        var e = Assert.Throws<DirtyTrackerException>(() => tracker.ReadDirty(new AddressRange(0, GiB), new RefusingSink(), DirtyReadMode.Clear));
        Assert.Multiple(() =>
        {
            Assert.That(e!.InnerException, Is.InstanceOf<ArgumentException>());
            Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Faulted), "the pages are gone from the log: the coverage must be treated as dirty");
        });
    }

    /// <summary>A sink that rejects what it is handed, as a sink over a too-small bitmap would.</summary>
    private sealed class RefusingSink : IDirtyGranuleSink
    {
        public void Accept(ulong address, long granuleSize, ReadOnlySpan<ulong> bitmap, ulong bitCount) =>
            throw new ArgumentOutOfRangeException(nameof(address), address, "not mine");
    }
}
