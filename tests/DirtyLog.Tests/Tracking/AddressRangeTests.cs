// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Tracking;

/// <summary>The one range type: ends at 2^64, inclusive windows from the kernel, refusals.</summary>
[TestFixture]
public class AddressRangeTests
{
    [Test]
    public void ARangeMayEndExactlyAt2To64ButNotPastIt()
    {
        var top = new AddressRange(ulong.MaxValue - 4095, 4096);
        Assert.Multiple(() =>
        {
            Assert.That(top.End, Is.EqualTo(0UL));
            Assert.That(top.Last, Is.EqualTo(ulong.MaxValue));
            Assert.That(() => new AddressRange(ulong.MaxValue - 4095, 8192), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => default(AddressRange).Last, Throws.InvalidOperationException);
        });
    }

    [Test]
    public void AnInclusiveWindowBecomesOneRange()
    {
        Assert.Multiple(() =>
        {
            Assert.That(AddressRange.FromInclusive(0x1000, 0x1fff), Is.EqualTo(new[] { new AddressRange(0x1000, 0x1000) }));
            Assert.That(AddressRange.FromInclusive(0, ulong.MaxValue - 1), Is.EqualTo(new[] { new AddressRange(0, ulong.MaxValue) }));
            Assert.That(AddressRange.FromInclusive(1, ulong.MaxValue), Is.EqualTo(new[] { new AddressRange(1, ulong.MaxValue) }));
            Assert.That(AddressRange.FromInclusive(7, 7), Is.EqualTo(new[] { new AddressRange(7, 1) }));
        });
    }

    [Test]
    public void TheWholeSpaceBecomesTwoHalvesThatCoverItExactly()
    {
        AddressRange[] halves = AddressRange.FromInclusive(0, ulong.MaxValue);
        Assert.Multiple(() =>
        {
            Assert.That(halves, Has.Length.EqualTo(2));
            Assert.That(halves[0].Start, Is.EqualTo(0UL));
            Assert.That(halves[0].End, Is.EqualTo(halves[1].Start));
            Assert.That(halves[1].Last, Is.EqualTo(ulong.MaxValue));
            Assert.That(halves[0].Length, Is.EqualTo(halves[1].Length));
        });
    }

    [Test]
    public void AWindowWhoseLastIsBelowItsFirstIsRefused() =>
        Assert.That(() => AddressRange.FromInclusive(0x2000, 0x1fff), Throws.InstanceOf<ArgumentOutOfRangeException>());
}
