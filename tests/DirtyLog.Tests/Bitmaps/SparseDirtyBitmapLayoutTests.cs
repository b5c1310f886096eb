// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Bitmaps;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Bitmaps;

/// <summary>
/// Both layouts of the bitmap against a plain model, one seeded script of every operation at a time: a 48-bit space
/// (2^36 pages of 4 KiB) takes the flat layout, a 64-bit one the radix tree. Each step's result (runs, counts) must be
/// the model's, page for page, in both.
/// </summary>
[TestFixture]
[Category("Unit")]
public class SparseDirtyBitmapLayoutTests
{
    // Three leaves and a bit, so that ranges, merges and walks cross leaf and line boundaries.
    private const int WindowPages = (3 * 32768) + 1000;

    [TestCase(48, 20261201)]
    [TestCase(48, 20261202)]
    [TestCase(48, 20261203)]
    [TestCase(64, 20261201)]
    [TestCase(64, 20261202)]
    [TestCase(64, 20261203)]
    public void EveryOperationMatchesAPlainModel(int addressWidth, int seed)
    {
        var random = new Random(seed);

        // Unaligned, and in the flat layout's second level-3 word, so that the walk descends through several levels.
        ulong windowBase = (1UL << 33) + (ulong)random.Next(1 << 20) + 13;
        using var bitmap = new SparseDirtyBitmap(addressWidth);
        var model = new bool[WindowPages];
        for (int step = 0; step < 600; step++)
        {
            string what = Step(random, bitmap, model, windowBase);
            Assert.That(bitmap.CountRange(windowBase, WindowPages), Is.EqualTo((ulong)model.Count(d => d)),
                $"seed {seed}, step {step} ({what}): the count");
        }

        Assert.That(Pages(bitmap.HarvestRuns()), Is.EqualTo(DirtyOf(model, windowBase, 0, WindowPages)), "the final harvest");
    }

    private static string Step(Random random, SparseDirtyBitmap bitmap, bool[] model, ulong windowBase)
    {
        int op = random.Next(8);
        int first = random.Next(WindowPages);
        int count = random.Next(1, Math.Min(WindowPages - first, random.Next(2) == 0 ? 300 : 70_000) + 1);
        switch (op)
        {
            case 0:
                bitmap.Mark(windowBase + (ulong)first);
                model[first] = true;
                return "mark";
            case 1:
                bitmap.MarkRange(windowBase + (ulong)first, (ulong)count);
                Array.Fill(model, true, first, count);
                return "range";
            case 2:
            {
                if (random.Next(2) == 0)
                {
                    // Half the merges start on a word, as a memory slot's bitmap does (a path of its own).
                    int aligned = first + (int)((64 - ((windowBase + (ulong)first) & 63)) & 63);
                    if (aligned >= WindowPages)
                    {
                        return "aligned merge skipped";
                    }

                    first = aligned;
                    count = Math.Min(count, WindowPages - first);
                }

                var words = new ulong[(count + 63) / 64];
                for (int i = 0; i < count; i++)
                {
                    if (random.Next(4) == 0 || (i / 64) % 5 == 0)
                    {
                        // Every fifth word full: full words are stored plainly.
                        words[i / 64] |= 1UL << (i % 64);
                        model[first + i] = true;
                    }
                }

                bitmap.MergeBitmap(words, windowBase + (ulong)first, (ulong)count);
                return "merge";
            }

            case 3:
            {
                // A coarse bitmap: each bit stands for 16 pages.
                int bits = Math.Max(1, count / 16);
                if (first + (bits * 16) > WindowPages)
                {
                    return "coarse merge skipped";
                }

                var words = new ulong[(bits + 63) / 64];
                for (int i = 0; i < bits; i++)
                {
                    if (random.Next(3) == 0)
                    {
                        words[i / 64] |= 1UL << (i % 64);
                        Array.Fill(model, true, first + (i * 16), 16);
                    }
                }

                bitmap.MergeBitmap(words, windowBase + (ulong)first, (ulong)bits, 4);
                return "coarse merge";
            }

            case 4:
            {
                var sink = new RunCollector();
                bitmap.HarvestRange(windowBase + (ulong)first, (ulong)count, ref sink);
                Assert.That(Pages(sink.Runs), Is.EqualTo(DirtyOf(model, windowBase, first, count)), "a range harvest");
                Array.Fill(model, false, first, count);
                return "range harvest";
            }

            case 5:
            {
                var sink = new RunCollector();
                bitmap.PeekRange(windowBase + (ulong)first, (ulong)count, ref sink);
                Assert.That(Pages(sink.Runs), Is.EqualTo(DirtyOf(model, windowBase, first, count)), "a range peek");
                return "range peek";
            }

            case 6:
            {
                // A sink that refuses after a few runs: what it took is the model's first runs, the rest stays dirty.
                int limit = random.Next(1, 20);
                var sink = new RunCollector(limit);
                HarvestResult result = bitmap.Harvest(ref sink);
                List<ulong> expected = DirtyOf(model, windowBase, 0, WindowPages);
                List<ulong> taken = Pages(sink.Runs);
                Assert.That(taken, Is.EqualTo(expected.Take(taken.Count)), "a refused harvest returns the first runs");
                Assert.That(result.Completed, Is.EqualTo(taken.Count == expected.Count));
                foreach (ulong page in taken)
                {
                    model[(int)(page - windowBase)] = false;
                }

                return "refused harvest";
            }

            default:
            {
                if (random.Next(4) != 0)
                {
                    return "nothing";
                }

                Assert.That(Pages(bitmap.HarvestRuns()), Is.EqualTo(DirtyOf(model, windowBase, 0, WindowPages)), "a harvest");
                Array.Clear(model);
                return "harvest";
            }
        }
    }

    private static List<ulong> DirtyOf(bool[] model, ulong windowBase, int first, int count)
    {
        var pages = new List<ulong>();
        for (int i = first; i < first + count; i++)
        {
            if (model[i])
            {
                pages.Add(windowBase + (ulong)i);
            }
        }

        return pages;
    }

    private static List<ulong> Pages(IEnumerable<DirtyRun> runs)
    {
        var pages = new List<ulong>();
        foreach (DirtyRun run in runs)
        {
            for (ulong p = run.FirstPage; p < run.EndPage; p++)
            {
                pages.Add(p);
            }
        }

        return pages;
    }
}
