// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Mapping;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Mapping;

/// <summary>How the iommufd map backend finds this process's memory for a guest range: checked regions, split per region.</summary>
[TestFixture]
[Category("Unit")]
public class GuestTranslationTests
{
    private const ulong MiB = 1UL << 20;

    private static readonly HostMemoryRegion Low = new(At(0x7000_0000_0000), 0, 16 * MiB);
    private static readonly HostMemoryRegion High = new(At(0x7100_0000_0000), 16 * MiB, 16 * MiB);
    private static readonly HostMemoryRegion AfterAHole = new(At(0x7200_0000_0000), 64 * MiB, 4 * MiB);

    /// <summary>A host address (a 64-bit process's).</summary>
    private static nint At(long address) => (nint)address;


    [Test]
    public void ARangeInOneRegionIsOnePiece()
    {
        HostMemoryRegion[] regions = GuestTranslation.Check([High, Low], "regions");
        Assert.That(GuestTranslation.Split(regions, 4 * MiB, 8 * MiB), Is.EqualTo(new[] { (At(0x7000_0040_0000), 8 * MiB) }));
    }

    [Test]
    public void ARangeAcrossAdjacentRegionsIsOnePiecePerRegionInGuestOrder()
    {
        HostMemoryRegion[] regions = GuestTranslation.Check([High, Low], "regions");
        Assert.That(GuestTranslation.Split(regions, 12 * MiB, 8 * MiB), Is.EqualTo(new[] { (At(0x7000_00C0_0000), 4 * MiB), (At(0x7100_0000_0000), 4 * MiB) }));
    }

    [Test]
    public void ARangeOverAHoleOrOutsideEveryRegionIsRefused()
    {
        HostMemoryRegion[] regions = GuestTranslation.Check([Low, High, AfterAHole], "regions");
        Assert.Multiple(() =>
        {
            Assert.That(() => GuestTranslation.Split(regions, 30 * MiB, 36 * MiB), Throws.ArgumentException.With.Message.Contains("0x2000000"));
            Assert.That(() => GuestTranslation.Split(regions, 100 * MiB, 4096), Throws.ArgumentException);
            Assert.That(() => GuestTranslation.Split(regions, 0, 0), Throws.InstanceOf<ArgumentOutOfRangeException>());
        });
    }

    [Test]
    public void OverlappingUnalignedOrEmptyRegionsAreRefused()
    {
        Assert.Multiple(() =>
        {
            Assert.That(() => GuestTranslation.Check([Low, Low with { HostAddress = At(0x7300_0000_0000), GuestAddress = 8 * MiB }], "r"), Throws.ArgumentException.With.Message.Contains("overlap"));
            Assert.That(() => GuestTranslation.Check([Low with { GuestAddress = 100 }], "r"), Throws.ArgumentException);
            Assert.That(() => GuestTranslation.Check([Low with { Length = 0 }], "r"), Throws.ArgumentException);
        });
    }
}
