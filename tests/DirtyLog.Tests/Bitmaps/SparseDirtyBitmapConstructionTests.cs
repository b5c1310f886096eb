// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Bitmaps;
using NUnit.Framework;

namespace DirtyLog.Tests.Bitmaps;

[TestFixture]
[Category("Unit")]
public class SparseDirtyBitmapConstructionTests
{
    [TestCase(40, 4096, 1UL << 28)]
    [TestCase(48, 4096, 1UL << 36)]
    [TestCase(64, 4096, 1UL << 52)]
    [TestCase(12, 4096, 1UL)]
    [TestCase(40, 2 * 1024 * 1024, 1UL << 19)]
    [TestCase(64, 1L << 30, 1UL << 34)]
    public void PageCountFollowsAddressWidthAndPageSize(int width, long pageSize, ulong pages)
    {
        using var bitmap = new SparseDirtyBitmap(width, pageSize);
        Assert.Multiple(() =>
        {
            Assert.That(bitmap.PageCount, Is.EqualTo(pages));
            Assert.That(bitmap.PageSize, Is.EqualTo(pageSize));
            Assert.That(1L << bitmap.PageShift, Is.EqualTo(pageSize));
            Assert.That(bitmap.AddressWidth, Is.EqualTo(width));
        });
    }

    [TestCase(0)]
    [TestCase(-4096)]
    [TestCase(512)]
    [TestCase(2048)]
    [TestCase(4095)]
    [TestCase(6144)]
    [TestCase(12288)]
    public void RejectsPageSizesThatAreNotPowersOfTwoOfAtLeast4KiB(long pageSize)
    {
        Assert.That(() => new SparseDirtyBitmap(48, pageSize),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("pageSize")
                .And.Message.Contains("power of two"));
    }

    [TestCase(11)]
    [TestCase(65)]
    [TestCase(-1)]
    public void RejectsAddressWidthsOutsideThePageShiftTo64(int width)
    {
        Assert.That(() => new SparseDirtyBitmap(width),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("addressWidth"));
    }

    [Test]
    public void EveryOperationAfterDisposeThrowsObjectDisposed()
    {
        var bitmap = new SparseDirtyBitmap(40);
        bitmap.Mark(5);
        bitmap.Dispose();
        bitmap.Dispose(); // idempotent
        var sink = new Infrastructure.RunCollector();
        Assert.Multiple(() =>
        {
            Assert.That(() => bitmap.Mark(1), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => bitmap.MarkRange(1, 10), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => bitmap.MergeBitmap(new ulong[1], 0, 64), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => bitmap.Harvest(ref sink), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => bitmap.HarvestRange(0, 10, ref sink), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => bitmap.Peek(ref sink), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => bitmap.Count(), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => bitmap.Harvest(new DirtyRun[4]), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(bitmap.BytesInUse, Is.Zero, "dispose returns every byte");
        });
    }
}
