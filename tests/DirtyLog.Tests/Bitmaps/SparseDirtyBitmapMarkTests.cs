// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Bitmaps;

[TestFixture]
[Category("Unit")]
public class SparseDirtyBitmapMarkTests
{
    // Word, line (512 pages), leaf (32,768 pages) and node (2^21 pages) boundaries, and both ends of the space.
    private static readonly ulong[] s_edgePages =
    [
        0, 1, 62, 63, 64, 65, 511, 512, 32767, 32768, 32769, (1UL << 21) - 1, 1UL << 21,
        (1UL << 28) - 64, (1UL << 28) - 2, (1UL << 28) - 1,
    ];

    [Test]
    public void EachEdgePageIsReturnedAloneAndThenCleared([ValueSource(nameof(s_edgePages))] ulong page)
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.Mark(page);
        Assert.Multiple(() =>
        {
            Assert.That(bitmap.Count(), Is.EqualTo(1));
            Assert.That(bitmap.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(page, 1) }));
            Assert.That(bitmap.HarvestRuns(), Is.Empty, "a second harvest returns nothing new");
            Assert.That(bitmap.Count(), Is.Zero);
        });
    }

    [Test]
    public void MarkingTwiceBeforeAHarvestReturnsThePageOnce()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.Mark(100);
        bitmap.Mark(100);
        Assert.That(bitmap.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(100, 1) }));
    }

    [Test]
    public void TheFirstAndLastPageOfTheFull64BitSpaceCanBeMarked()
    {
        using var bitmap = new SparseDirtyBitmap(64);
        ulong last = bitmap.PageCount - 1;
        bitmap.Mark(0);
        bitmap.Mark(last);
        Assert.That(bitmap.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(0, 1), new DirtyRun(last, 1) }));
    }

    [Test]
    public void APageBeyondTheAddressWidthIsRejectedAndChangesNothing()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        long bytes = bitmap.BytesInUse;
        Assert.That(() => bitmap.Mark(1UL << 28),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("page")
                .And.Message.Contains("beyond"));
        Assert.That(() => bitmap.Mark(ulong.MaxValue), Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.Multiple(() =>
        {
            Assert.That(bitmap.Count(), Is.Zero);
            Assert.That(bitmap.BytesInUse, Is.EqualTo(bytes));
        });
    }

    [TestCase(0UL, 1UL)]
    [TestCase(0UL, 64UL)]
    [TestCase(1UL, 62UL)]
    [TestCase(63UL, 2UL)]
    [TestCase(60UL, 200UL)]
    [TestCase(500UL, 30UL)]
    [TestCase(0UL, 512UL)]
    [TestCase(32760UL, 20UL)]
    [TestCase(32767UL, 32770UL)]
    [TestCase(5UL, 200000UL)]
    [TestCase((1UL << 21) - 3, 6UL)]
    [TestCase((1UL << 28) - 100, 100UL)]
    public void ARangeIsReturnedAsExactlyOneRun(ulong first, ulong count)
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.MarkRange(first, count);
        Assert.Multiple(() =>
        {
            Assert.That(bitmap.Count(), Is.EqualTo(count));
            Assert.That(bitmap.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(first, count) }));
            Assert.That(bitmap.Count(), Is.Zero);
        });
    }

    [Test]
    public void AnEmptyRangeMarksNothingEvenAtTheEndOfTheSpace()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.MarkRange(17, 0);
        bitmap.MarkRange(bitmap.PageCount, 0);
        Assert.That(bitmap.Count(), Is.Zero);
    }

    [Test]
    public void RangesThatOverflowOrEndPastTheSpaceAreRejectedAndChangeNothing()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        Assert.Multiple(() =>
        {
            Assert.That(() => bitmap.MarkRange(ulong.MaxValue - 1, 4),
                Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("overflows"));
            Assert.That(() => bitmap.MarkRange(bitmap.PageCount - 1, 2),
                Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("ends past"));
            Assert.That(() => bitmap.MarkRange(bitmap.PageCount + 1, 0), Throws.TypeOf<ArgumentOutOfRangeException>());
            Assert.That(bitmap.Count(), Is.Zero);
        });
    }

    [Test]
    public void AdjacentMarksJoinIntoMaximalRunsAcrossWordLineAndLeafBoundaries()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.MarkRange(32700, 68);   // ends at the leaf boundary
        bitmap.MarkRange(32768, 10);   // continues in the next leaf
        bitmap.Mark(32778);
        bitmap.Mark(40000);
        Assert.That(bitmap.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(32700, 79), new DirtyRun(40000, 1) }));
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public void RandomMarksAndRangesMatchASetModel(int seed)
    {
        var random = new Random(seed);
        using var bitmap = new SparseDirtyBitmap(44);
        var model = new HashSet<ulong>();
        for (int round = 0; round < 5; round++)
        {
            for (int i = 0; i < 2000; i++)
            {
                ulong cluster = (ulong)random.Next(4) << 26;
                ulong first = cluster + (ulong)random.Next(1 << 18);
                if (random.Next(3) == 0)
                {
                    ulong count = (ulong)random.Next(1, 3000);
                    bitmap.MarkRange(first, count);
                    for (ulong p = first; p < first + count; p++)
                    {
                        model.Add(p);
                    }
                }
                else
                {
                    bitmap.Mark(first);
                    model.Add(first);
                }
            }

            Assert.That(bitmap.Count(), Is.EqualTo((ulong)model.Count));
            Assert.That(bitmap.HarvestRuns(), Is.EqualTo(model.ToRuns()), $"round {round}");
            model.Clear();
        }

        Assert.That(bitmap.PeekRuns(), Is.Empty);
    }
}
