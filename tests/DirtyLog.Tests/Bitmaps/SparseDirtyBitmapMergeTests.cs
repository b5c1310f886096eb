// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Bitmaps;

[TestFixture]
[Category("Unit")]
public class SparseDirtyBitmapMergeTests
{
    /// <summary>The pages a kernel-format bitmap names: bit i of the little-endian words is page first + i.</summary>
    private static List<ulong> PagesOf(ulong[] words, ulong first, ulong count)
    {
        var pages = new List<ulong>();
        for (ulong i = 0; i < count; i++)
        {
            if ((words[i / 64] & (1UL << (int)(i % 64))) != 0)
            {
                pages.Add(first + i);
            }
        }

        return pages;
    }

    private static ulong[] RandomWords(Random random, int words, double density)
    {
        var bitmap = new ulong[words];
        for (int w = 0; w < words; w++)
        {
            // Mix empty words, full words and random bits, so that both SIMD skips and dense paths run.
            int kind = random.Next(10);
            bitmap[w] = kind switch
            {
                0 => ~0UL,
                < 4 => 0UL,
                _ => RandomBits(random, density),
            };
        }

        return bitmap;
    }

    private static ulong RandomBits(Random random, double density)
    {
        ulong value = 0;
        for (int b = 0; b < 64; b++)
        {
            if (random.NextDouble() < density)
            {
                value |= 1UL << b;
            }
        }

        return value;
    }

    [TestCase(0UL, 64UL)]
    [TestCase(0UL, 100UL)]
    [TestCase(1UL, 64UL)]
    [TestCase(63UL, 130UL)]
    [TestCase(32760UL, 1000UL)]
    [TestCase(32768UL - 64, 64UL * 20)]
    [TestCase(511UL, 4097UL)]
    [TestCase((1UL << 28) - 640, 640UL)]
    [TestCase((1UL << 28) - 641, 641UL)]
    public void AMergedBitmapSetsExactlyItsBitsAtAnyStartingPage(ulong first, ulong count)
    {
        var random = new Random((int)(first ^ count));
        ulong[] words = RandomWords(random, (int)((count + 63) / 64) + 2, 0.3);
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.MergeBitmap(words, first, count);
        Assert.That(bitmap.HarvestRuns(), Is.EqualTo(PagesOf(words, first, count).ToRuns()));
    }

    [Test]
    public void BitsPastThePageCountAreIgnored()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.MergeBitmap(new[] { ~0UL, ~0UL }, 10, 70);
        Assert.That(bitmap.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(10, 70) }));
    }

    [Test]
    public void MergeOrsIntoWhatIsAlreadyMarked()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.Mark(3);
        bitmap.Mark(1000);
        bitmap.MergeBitmap(new[] { 0b1010UL }, 0, 64);
        Assert.That(bitmap.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(1, 1), new DirtyRun(3, 1), new DirtyRun(1000, 1) }));
    }

    [Test]
    public void MergingACleanBitmapAllocatesNothing()
    {
        using var bitmap = new SparseDirtyBitmap(48);
        long before = bitmap.BytesInUse;
        bitmap.MergeBitmap(new ulong[4096], 1UL << 30, 4096 * 64);
        Assert.Multiple(() =>
        {
            Assert.That(bitmap.BytesInUse, Is.EqualTo(before));
            Assert.That(bitmap.Count(), Is.Zero);
        });
    }

    [Test]
    public void ASpanShorterThanItsPageCountIsRejectedAndChangesNothing()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        Assert.That(() => bitmap.MergeBitmap(new[] { ~0UL, ~0UL }, 0, 129),
            Throws.ArgumentException.With.Property("ParamName").EqualTo("bitmap").And.Message.Contains("needs 3 words"));
        Assert.That(bitmap.Count(), Is.Zero);
    }

    [Test]
    public void ARangePastTheSpaceIsRejectedAndChangesNothing()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        Assert.That(() => bitmap.MergeBitmap(new[] { ~0UL }, bitmap.PageCount - 10, 64),
            Throws.TypeOf<ArgumentOutOfRangeException>());
        Assert.That(bitmap.Count(), Is.Zero);
    }

    [Test]
    public void AnEmptyMergeIsANoOp()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        bitmap.MergeBitmap(ReadOnlySpan<ulong>.Empty, 77, 0);
        Assert.That(bitmap.Count(), Is.Zero);
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(4)]
    public void RandomMergesAtRandomOffsetsMatchASetModel(int seed)
    {
        var random = new Random(seed);
        using var bitmap = new SparseDirtyBitmap(40);
        var model = new HashSet<ulong>();
        for (int i = 0; i < 40; i++)
        {
            ulong first = (ulong)random.NextInt64(0, (1L << 28) - 200_000);
            ulong count = (ulong)random.Next(1, 150_000);
            ulong[] words = RandomWords(random, (int)((count + 63) / 64), random.NextDouble() * 0.2);
            bitmap.MergeBitmap(words, first, count);
            model.UnionWith(PagesOf(words, first, count));
        }

        Assert.That(bitmap.HarvestRuns(), Is.EqualTo(model.ToRuns()));
    }

    [TestCase(0UL, 9)]
    [TestCase(77UL, 9)]
    [TestCase(1000UL, 1)]
    [TestCase(0UL, 18)]
    public void ACoarseBitmapMarksEveryPageOfEachDirtyGranule(ulong first, int shift)
    {
        var random = new Random(shift);
        ulong[] words = RandomWords(random, 3, 0.3);
        ulong bits = 150;
        using var bitmap = new SparseDirtyBitmap(44);
        bitmap.MergeBitmap(words, first, bits, shift);
        var expected = new List<ulong>();
        foreach (ulong granule in PagesOf(words, 0, bits))
        {
            for (ulong p = 0; p < 1UL << shift; p++)
            {
                expected.Add(first + (granule << shift) + p);
            }
        }

        Assert.That(bitmap.HarvestRuns(), Is.EqualTo(expected.ToRuns()));
    }

    [Test]
    public void ACoarseMergePastTheSpaceOrWithABadShiftIsRejected()
    {
        using var bitmap = new SparseDirtyBitmap(40);
        Assert.Multiple(() =>
        {
            Assert.That(() => bitmap.MergeBitmap(new[] { 1UL }, 0, 64, -1), Throws.TypeOf<ArgumentOutOfRangeException>());
            Assert.That(() => bitmap.MergeBitmap(new[] { 1UL }, 0, 64, 64), Throws.TypeOf<ArgumentOutOfRangeException>());
            Assert.That(() => bitmap.MergeBitmap(new[] { 1UL }, 0, 64, 23), Throws.TypeOf<ArgumentOutOfRangeException>());
            Assert.That(() => bitmap.MergeBitmap(new[] { 1UL }, 0, 65, 9), Throws.ArgumentException);
            Assert.That(bitmap.Count(), Is.Zero);
        });
    }
}
