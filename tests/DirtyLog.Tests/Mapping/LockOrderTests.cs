// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Mapping;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;
using NUnit.Framework;

namespace DirtyLog.Tests.Mapping;

/// <summary>
/// One lock order for the address space and its trackers: the address space's lock, then a tracker's. A direct read
/// of an attached IOMMU tracker racing an unmap's sync read must not deadlock.
/// </summary>
[TestFixture]
public class LockOrderTests : EmulatedIommuFixture
{
    private const ulong X = 0x4000_0000;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [Test]
    public void ADirectReadOfAnAttachedTrackerRacingAnUnmapDoesNotDeadlock()
    {
        using var target = new SparseDirtyBitmap(40);
        IoAddressSpace space = new Correlator(target).AddAddressSpace(Ioas, new EmulatedIoMapBackend(Iommu, Ioas, 4096));
        var first = new GatedPort(Hwpt);
        var second = new GatedPort(Iommu.AllocateHwpt(Ioas, dirtyTracking: true));
        // Not disposed by `using`: after a deadlock, disposing would wait on the deadlocked tracker's lock forever.
        var unmapSide = new IommuTracker(first, name: "first");
        var directSide = new IommuTracker(second, name: "second");
        space.Attach(unmapSide);
        space.Attach(directSide);
        space.Map(X, 8 * MiB, 4096);
        unmapSide.StartTracking();
        directSide.StartTracking();
        Hwpt.DmaWriteUInt64(X, 1);

        // The unmap holds the address space's write lock and is parked inside its sync read of the first tracker.
        first.ParkNextRead = true;
        var unmap = new Thread(() => space.Unmap(X, 4096)) { IsBackground = true };
        unmap.Start();
        Assert.That(first.Parked.Wait(Bound), Is.True, "the unmap never reached its sync read");

        // Now a direct read of the second tracker: it must wait for the unmap without holding what the unmap needs next.
        ulong directPages = ulong.MaxValue;
        var direct = new Thread(() => directPages = directSide.ReadDirty(new AddressRange(X, 4096), new DiscardingSink(), DirtyReadMode.NoClear)) { IsBackground = true };
        direct.Start();
        ThreadStates.WaitUntilBlocked(direct, mayEnd: false, "the direct read");

        first.Release.Set();
        bool unmapEnded = unmap.Join(Bound), directEnded = direct.Join(Bound);
        Assert.Multiple(() =>
        {
            Assert.That(unmapEnded, Is.True, "the unmap deadlocked against the direct read");
            Assert.That(directEnded, Is.True, "the direct read deadlocked against the unmap");
        });
        Assert.That(directPages, Is.Zero, "the direct read ran after the unmap, over nothing mapped");
        unmapSide.Dispose();
        directSide.Dispose();
    }

    /// <summary>A HWPT port whose next read can be parked until the test releases it.</summary>
    private sealed class GatedPort(EmulatedHwpt inner) : IIommuDirtyPort
    {
        public volatile bool ParkNextRead;

        public ManualResetEventSlim Parked { get; } = new();

        public ManualResetEventSlim Release { get; } = new();

        public string Name => inner.Name;

        public uint IoAddressSpaceId => inner.IoAddressSpaceId;

        public ulong IovaAlignment => inner.IovaAlignment;

        public void SetDirtyTracking(bool enable) => inner.SetDirtyTracking(enable);

        public void GetDirtyBitmap(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap, bool noClear)
        {
            if (ParkNextRead)
            {
                ParkNextRead = false;
                Parked.Set();
                Release.Wait();
            }

            inner.GetDirtyBitmap(iova, length, pageSize, bitmap, noClear);
        }
    }

    private sealed class DiscardingSink : IDirtyGranuleSink
    {
        public void Accept(ulong address, long granuleSize, ReadOnlySpan<ulong> bitmap, ulong bitCount)
        {
        }
    }
}
