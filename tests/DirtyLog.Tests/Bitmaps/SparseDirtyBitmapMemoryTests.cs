// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Bitmaps;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Bitmaps;

[TestFixture]
[Category("Unit")]
public class SparseDirtyBitmapMemoryTests
{
    private const long MiB = 1024 * 1024;

    [Test]
    public void AFullyDirtyTebibyteGuestCostsAtMost32MiBPlusTwoPercent()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.MarkRange(0, bitmap.PageCount);
        long bytes = bitmap.BytesInUse;
        TestContext.Out.WriteLine($"fully dirty 1 TiB: {bytes:#,0} bytes = 32 MiB + {(bytes - (32 * MiB)) * 100.0 / (32 * MiB):0.00}%");
        Assert.Multiple(() =>
        {
            Assert.That(bytes, Is.LessThanOrEqualTo((long)(32 * MiB * 1.02)));
            Assert.That(bitmap.Count(), Is.EqualTo(bitmap.PageCount));
            Assert.That(bitmap.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(0, bitmap.PageCount) }));
        });
    }

    [TestCase(512)]
    [TestCase(1024)]
    public void ASparseIovaSpaceCostsInProportionToWhatWasMarked(int pieces)
    {
        // 2 MiB pieces (512 pages) scattered over a 48-bit aperture, as a guest's IOVA maps can be.
        using var bitmap = new SparseDirtyBitmap(48);
        long empty = bitmap.BytesInUse;
        var random = new Random(pieces);
        for (int i = 0; i < pieces; i++)
        {
            ulong piece = (ulong)random.NextInt64(1L << 27);
            bitmap.MarkRange(piece * 512, 512);
        }

        long perPiece = (bitmap.BytesInUse - empty) / pieces;
        TestContext.Out.WriteLine($"{pieces} pieces of 2 MiB over 48 bits: {bitmap.BytesInUse:#,0} bytes, {perPiece:#,0} per piece");
        Assert.Multiple(() =>
        {
            // The cost of the pieces, never of the aperture. Flat layout: per piece one 4 KiB page of words and one of
            // line bytes, plus the upper summary levels (2 MiB, 32 KiB and 512 bytes for a 48-bit space) at most once.
            // (The tree: one leaf plus one node per level per piece, within the same bound.)
            Assert.That(bitmap.BytesInUse - empty, Is.LessThanOrEqualTo(((long)pieces * 2 * 4096) + (2 * MiB) + (36 * 1024)));
            Assert.That(bitmap.Count(), Is.EqualTo((ulong)pieces * 512).Within((ulong)pieces * 512 / 50),
                "random pieces seldom overlap");
        });
    }

    [Test]
    public void MarksAtTheExtremesOfA64BitSpaceCostOnlyTheirPaths()
    {
        using var bitmap = new SparseDirtyBitmap(64);
        long empty = bitmap.BytesInUse;
        bitmap.Mark(0);
        bitmap.Mark(bitmap.PageCount - 1);
        bitmap.Mark(bitmap.PageCount / 2);
        Assert.That(bitmap.BytesInUse - empty, Is.LessThanOrEqualTo(3 * (4096 + (7 * 1088))));
    }

    [Test]
    public void HarvestingACleanOrDirtyBitmapWithAStructSinkAllocatesNothing()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.MarkRange(1000, 100_000);
        for (ulong p = 0; p < 1UL << 28; p += 999_983)
        {
            bitmap.Mark(p);
        }

        var sink = default(CountingSink);
        bitmap.Harvest(ref sink); // warm up the JIT
        bitmap.MarkRange(1000, 100_000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        HarvestResult dirty = bitmap.Harvest(ref sink);
        HarvestResult clean = bitmap.Harvest(ref sink);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Multiple(() =>
        {
            Assert.That(dirty.Pages, Is.EqualTo(100_000));
            Assert.That(clean.Pages, Is.Zero);
            Assert.That(allocated, Is.Zero);
        });
    }

    [Test]
    public void HarvestingNeverAllocatesNativeMemory()
    {
        using var bitmap = new SparseDirtyBitmap(48);
        bitmap.MarkRange(1UL << 30, 70_000);
        long bytes = bitmap.BytesInUse;
        bitmap.HarvestRuns();
        bitmap.HarvestRuns();
        Assert.That(bitmap.BytesInUse, Is.EqualTo(bytes));
    }

    private struct CountingSink : IDirtyRunSink
    {
        public readonly bool TryAccept(DirtyRun run) => true;
    }
}
