// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Tracking;

[TestFixture]
[Category("Unit")]
public class DeviceTrackingPlanTests
{
    private const ulong KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

    [Test]
    public void RangesWithinTheLimitsAreKeptAsTheyAre()
    {
        var plan = DeviceTrackingPlan.Create([new AddressRange(1 * GiB, 2 * MiB), new AddressRange(0, 64 * KiB)], 4096, new DeviceDirtyLogLimits());
        Assert.Multiple(() =>
        {
            Assert.That(plan.Ranges, Is.EqualTo(new[] { new AddressRange(0, 64 * KiB), new AddressRange(1 * GiB, 2 * MiB) }));
            Assert.That(plan.PageSize, Is.EqualTo(4096));
            Assert.That(plan.TrackedBytes, Is.EqualTo(plan.MappedBytes));
        });
    }

    [Test]
    public void ManyRangesAreFoldedByMergingTheSmallestGapsFirst()
    {
        // Gaps: 4 KiB, 1 GiB, 8 KiB, 1 MiB. With a limit of 3 ranges, the two smallest gaps (4 KiB, 8 KiB) go.
        AddressRange[] mapped =
        [
            new(0, 4 * KiB), new(8 * KiB, 4 * KiB), new((1 * GiB) + (12 * KiB), 4 * KiB),
            new((1 * GiB) + (24 * KiB), 4 * KiB), new((1 * GiB) + (1 * MiB) + (28 * KiB), 4 * KiB),
        ];
        var plan = DeviceTrackingPlan.Create(mapped, 4096, new DeviceDirtyLogLimits { MaxRanges = 3 });
        Assert.Multiple(() =>
        {
            Assert.That(plan.Ranges, Is.EqualTo(new[]
            {
                new AddressRange(0, 12 * KiB),
                new AddressRange((1 * GiB) + (12 * KiB), 16 * KiB),
                new AddressRange((1 * GiB) + (1 * MiB) + (28 * KiB), 4 * KiB),
            }));
            Assert.That(plan.TrackedBytes - plan.MappedBytes, Is.EqualTo(12 * KiB), "the two folded gaps");
        });
    }

    [TestCase(1)]
    [TestCase(2)]
    public void FoldingGivesTheSameRangesAsTheKernelsPairwiseMerge(int seed)
    {
        var random = new Random(seed);
        var mapped = new List<AddressRange>();
        ulong at = 0;
        for (int i = 0; i < 600; i++)
        {
            at += (ulong)random.Next(1, 5000) * 4096;
            ulong length = (ulong)random.Next(1, 64) * 4096;
            mapped.Add(new AddressRange(at, length));
            at += length;
        }

        var plan = DeviceTrackingPlan.Create(mapped, 4096, new DeviceDirtyLogLimits { MaxRanges = 17 });
        // The emulated device's fold is a literal port of the kernel's pairwise merge: the oracle.
        Assert.That(plan.Ranges, Is.EqualTo(DirtyLog.Testing.EmulatedDmaDevice.Combine(mapped.ToArray(), 17)));
    }

    [Test]
    public void AlignmentToTheGrantedPageSizeJoinsRangesItMakesTouch()
    {
        var plan = DeviceTrackingPlan.Create([new AddressRange(4 * KiB, 4 * KiB), new AddressRange(60 * KiB, 8 * KiB)], 64 * 1024, new DeviceDirtyLogLimits());
        Assert.That(plan.Ranges, Is.EqualTo(new[] { new AddressRange(0, 128 * KiB) }));
    }

    [Test]
    public void ARequestBelowTheDeviceMinimumIsRaised()
    {
        var plan = DeviceTrackingPlan.Create([new AddressRange(0, 4 * MiB)], 4096, new DeviceDirtyLogLimits { MinPageSize = 2 * 1024 * 1024 });
        Assert.That(plan.PageSize, Is.EqualTo(2 * 1024 * 1024));
    }

    [Test]
    public void AMappingAboveTheDeviceAddressWidthIsRefusedWithTheReason()
    {
        Assert.That(() => DeviceTrackingPlan.Create([new AddressRange(1UL << 42, 4096)], 4096, DeviceDirtyLogLimits.Mlx5),
            Throws.TypeOf<DeviceTrackingPlanException>().With.Message.Contains("42-bit"));
    }

    [Test]
    public void APageSizeTheDeviceCannotGrantIsRefused()
    {
        Assert.Multiple(() =>
        {
            Assert.That(() => DeviceTrackingPlan.Create([new AddressRange(0, 4096)], 12288, new DeviceDirtyLogLimits()),
                Throws.TypeOf<DeviceTrackingPlanException>().With.Message.Contains("powers of two"));
            Assert.That(() => DeviceTrackingPlan.Create([new AddressRange(0, 4096)], 1L << 31, new DeviceDirtyLogLimits()),
                Throws.TypeOf<DeviceTrackingPlanException>());
            Assert.That(() => DeviceTrackingPlan.Create([], 4096, new DeviceDirtyLogLimits()), Throws.ArgumentException.With.Message.Contains("Nothing is mapped"));
            Assert.That(() => DeviceTrackingPlan.Create([new AddressRange(0, 8192), new AddressRange(4096, 4096)], 4096, new DeviceDirtyLogLimits()),
                Throws.ArgumentException.With.Message.Contains("overlap"));
        });
    }
}
