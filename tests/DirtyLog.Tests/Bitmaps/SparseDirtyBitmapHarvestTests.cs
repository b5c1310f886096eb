// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Bitmaps;

[TestFixture]
[Category("Unit")]
public class SparseDirtyBitmapHarvestTests
{
    private static SparseDirtyBitmap Scattered(out List<ulong> pages, int seed = 7, int count = 5000)
    {
        var random = new Random(seed);
        var bitmap = new SparseDirtyBitmap(48);
        var set = new SortedSet<ulong>();
        for (int i = 0; i < count; i++)
        {
            // Clusters at three far-apart places so that several nodes, leaves and lines are involved.
            ulong page = ((ulong)random.Next(3) << 33) + (ulong)random.Next(1 << 20);
            bitmap.Mark(page);
            set.Add(page);
        }

        pages = new List<ulong>(set);
        return bitmap;
    }

    [Test]
    public void ACleanBitmapHarvestsNothing()
    {
        using var bitmap = new SparseDirtyBitmap(64);
        var result = bitmap.Harvest(new DirtyRun[1]);
        Assert.Multiple(() =>
        {
            Assert.That(result.Pages, Is.Zero);
            Assert.That(result.Runs, Is.Zero);
            Assert.That(result.Completed, Is.True);
        });
    }

    [Test]
    public void PeekDoesNotClearAndHarvestDoes()
    {
        using SparseDirtyBitmap bitmap = Scattered(out List<ulong> pages);
        Assert.Multiple(() =>
        {
            Assert.That(bitmap.PeekRuns(), Is.EqualTo(pages.ToRuns()));
            Assert.That(bitmap.PeekRuns(), Is.EqualTo(pages.ToRuns()), "a second peek sees the same");
            Assert.That(bitmap.Count(), Is.EqualTo((ulong)pages.Count));
            Assert.That(bitmap.HarvestRuns(), Is.EqualTo(pages.ToRuns()));
            Assert.That(bitmap.PeekRuns(), Is.Empty);
        });
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(7)]
    [TestCase(100)]
    public void ASmallBufferHarvestsEverythingOverSeveralCallsWithNothingLostOrRepeated(int bufferRuns)
    {
        using SparseDirtyBitmap bitmap = Scattered(out List<ulong> pages);
        var buffer = new DirtyRun[bufferRuns];
        var seen = new List<ulong>();
        int calls = 0;
        HarvestResult result;
        do
        {
            result = bitmap.Harvest(buffer);
            Assert.That(result.Runs, Is.LessThanOrEqualTo((ulong)bufferRuns));
            for (int i = 0; i < (int)result.Runs; i++)
            {
                for (ulong p = buffer[i].FirstPage; p < buffer[i].EndPage; p++)
                {
                    seen.Add(p);
                }
            }

            calls++;
        }
        while (!result.Completed && calls < 100_000);

        Assert.Multiple(() =>
        {
            Assert.That(result.Completed, Is.True);
            Assert.That(seen, Is.EqualTo(pages), "every page once, in ascending order across calls");
            Assert.That(bitmap.Count(), Is.Zero);
        });
    }

    [Test]
    public void ARefusingSinkLeavesTheRefusedRunAndEverythingAfterItDirty()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.MarkRange(10, 5);
        bitmap.MarkRange(100, 5);
        bitmap.MarkRange(1UL << 20, 3);
        var sink = new RunCollector(limit: 1);
        HarvestResult result = bitmap.Harvest(ref sink);
        Assert.Multiple(() =>
        {
            Assert.That(result.Completed, Is.False);
            Assert.That(result.Pages, Is.EqualTo(5));
            Assert.That(sink.Runs, Is.EqualTo(new[] { new DirtyRun(10, 5) }));
            Assert.That(bitmap.PeekRuns(), Is.EqualTo(new[] { new DirtyRun(100, 5), new DirtyRun(1UL << 20, 3) }));
        });
    }

    [TestCase(0UL, 1UL << 28)]
    [TestCase(1UL, 100UL)]
    [TestCase(63UL, 2UL)]
    [TestCase(64UL * 7 + 5, 64UL * 9 + 3)]
    [TestCase(32767UL, 2UL)]
    [TestCase(30000UL, 40000UL)]
    [TestCase(1UL << 21, 1UL << 21)]
    [TestCase((1UL << 28) - 1, 1UL)]
    public void ARangeHarvestTakesExactlyTheRangeAndLeavesTheRest(ulong first, ulong count)
    {
        using var bitmap = new SparseDirtyBitmap(40);
        var random = new Random(11);
        var all = new SortedSet<ulong>();
        for (int i = 0; i < 20000; i++)
        {
            ulong page = random.Next(4) == 0 ? (ulong)random.NextInt64(1L << 28) : (ulong)random.Next(1 << 22);
            bitmap.Mark(page);
            all.Add(page);
        }

        for (ulong p = first > 3 ? first - 3 : 0; p < Math.Min(first + count + 3, 1UL << 28); p++)
        {
            // Make the range's edges dirty on both sides.
            if (p < first || p >= first + count || p == first || p == first + count - 1)
            {
                bitmap.Mark(p);
                all.Add(p);
            }
        }

        var inside = new List<ulong>();
        var outside = new List<ulong>();
        foreach (ulong p in all)
        {
            (p >= first && p < first + count ? inside : outside).Add(p);
        }

        Assert.Multiple(() =>
        {
            Assert.That(bitmap.CountRange(first, count), Is.EqualTo((ulong)inside.Count));
            Assert.That(bitmap.HarvestRangeRuns(first, count), Is.EqualTo(inside.ToRuns()));
            Assert.That(bitmap.HarvestRuns(), Is.EqualTo(outside.ToRuns()));
        });
    }

    [Test]
    public void ARangeHarvestWithARefusingSinkLosesNothing()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        for (ulong p = 0; p < 5000; p += 3)
        {
            bitmap.Mark(p);
        }

        var sink = new RunCollector(limit: 10);
        HarvestResult result = bitmap.HarvestRange(1, 4000, ref sink);
        var rest = bitmap.HarvestRuns();
        var pages = new SortedSet<ulong>(sink.Pages());
        foreach (DirtyRun run in rest)
        {
            Assert.That(pages.Add(run.FirstPage), Is.True, $"page {run.FirstPage} returned twice");
        }

        Assert.Multiple(() =>
        {
            Assert.That(result.Completed, Is.False);
            Assert.That(pages, Has.Count.EqualTo(1667));
        });
    }

    [Test]
    public void RangeArgumentsAreValidated()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        var sink = new RunCollector();
        Assert.Multiple(() =>
        {
            Assert.That(() => bitmap.HarvestRange(bitmap.PageCount, 1, ref sink), Throws.TypeOf<ArgumentOutOfRangeException>());
            Assert.That(() => bitmap.PeekRange(ulong.MaxValue, 2, ref sink), Throws.TypeOf<ArgumentOutOfRangeException>());
            Assert.That(() => bitmap.CountRange(1, ulong.MaxValue), Throws.TypeOf<ArgumentOutOfRangeException>());
            Assert.That(bitmap.HarvestRange(5, 0, ref sink).Pages, Is.Zero, "an empty range takes nothing");
        });
    }
}
