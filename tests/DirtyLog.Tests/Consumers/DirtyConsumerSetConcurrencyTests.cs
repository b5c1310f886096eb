// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Consumers;
using NUnit.Framework;

namespace DirtyLog.Tests.Consumers;

/// <summary>
/// Publications racing every consumer's takes, judged from what each consumer got, page by page: every page is
/// published exactly once, so each consumer must return each page exactly once and nothing else.
/// </summary>
[TestFixture]
[Category("Unit")]
[Category("Concurrency")]
public class DirtyConsumerSetConcurrencyTests
{
    private const int WindowPages = 1 << 16;
    private static readonly TimeSpan s_deadline = TimeSpan.FromMinutes(2);

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public void EveryConsumerGetsEveryPublishedPageOnceWhileTheyTakeDuringPublications(int seed)
    {
        List<string> violations = Run(seed, dropOneRun: false);
        Assert.That(violations, Is.Empty);
    }

    [Test]
    public void AConsumerThatLosesOneRunIsCaught()
    {
        List<string> violations = Run(seed: 4, dropOneRun: true);
        Assert.That(violations, Has.Some.Contains("lost"));
    }

    private static List<string> Run(int seed, bool dropOneRun)
    {
        const int Consumers = 2, Rounds = 30;
        using var set = new DirtyConsumerSet(48);
        var consumers = new DirtyConsumer[Consumers];
        var returned = new int[Consumers][];
        for (int c = 0; c < Consumers; c++)
        {
            consumers[c] = set.Register($"c{c}");
            returned[c] = new int[WindowPages];
        }

        // Each page once, in a seeded order, published in rounds of runs of 1 to 8 pages.
        var random = new Random(seed);
        int[] order = new int[WindowPages / 8];
        for (int i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        random.Shuffle(order);
        ulong windowBase = (ulong)random.NextInt64(1L << 30) + 3;
        using var published = new Barrier(Consumers + 1);
        int finished = 0;
        var takers = new Task[Consumers];
        for (int c = 0; c < Consumers; c++)
        {
            int me = c;
            takers[c] = Task.Factory.StartNew(() =>
            {
                bool dropped = false;
                while (true)
                {
                    bool last = Volatile.Read(ref finished) == 1;
                    var sink = new CountingSink(returned[me], windowBase, drop: dropOneRun && me == 0 && !dropped);
                    consumers[me].TakeChanges(ref sink);
                    dropped |= sink.Dropped;
                    if (last)
                    {
                        break;
                    }
                }

                published.SignalAndWait(s_deadline);
            }, TaskCreationOptions.LongRunning);
        }

        int next = 0;
        for (int round = 0; round < Rounds; round++)
        {
            var runs = new List<DirtyRun>();
            int end = round == Rounds - 1 ? order.Length : Math.Min(order.Length, next + (order.Length / Rounds));
            for (; next < end; next++)
            {
                ulong first = windowBase + ((ulong)order[next] * 8);
                runs.Add(new DirtyRun(first, (ulong)random.Next(1, 9)));
            }

            runs.Sort((a, b) => a.FirstPage.CompareTo(b.FirstPage));
            set.Publish(runs.ToArray());
        }

        // Every publication completed before this store; a take that reads it starts after them (contract 1).
        Volatile.Write(ref finished, 1);
        bool met = published.SignalAndWait(s_deadline);
        var violations = new List<string>();
        if (!met || !Task.WaitAll(takers, s_deadline))
        {
            violations.Add("a taker did not finish");
            return violations;
        }

        for (int c = 0; c < Consumers; c++)
        {
            for (int p = 0; p < WindowPages; p++)
            {
                if (returned[c][p] > 1)
                {
                    violations.Add($"consumer {c}: page {p} returned {returned[c][p]} times");
                }
            }
        }

        // Recompute the published pages from the same seed (runs never overlap: 8 pages apart, at most 8 long).
        var expected = new int[WindowPages];
        var replay = new Random(seed);
        int[] order2 = new int[WindowPages / 8];
        for (int i = 0; i < order2.Length; i++)
        {
            order2[i] = i;
        }

        replay.Shuffle(order2);
        replay.NextInt64(1L << 30);
        int n = 0;
        for (int round = 0; round < Rounds; round++)
        {
            int end = round == Rounds - 1 ? order2.Length : Math.Min(order2.Length, n + (order2.Length / Rounds));
            for (; n < end; n++)
            {
                int length = replay.Next(1, 9);
                for (int k = 0; k < length; k++)
                {
                    expected[(order2[n] * 8) + k] = 1;
                }
            }
        }

        for (int c = 0; c < Consumers; c++)
        {
            for (int p = 0; p < WindowPages; p++)
            {
                if (expected[p] == 1 && returned[c][p] == 0)
                {
                    violations.Add($"consumer {c}: page {p} lost");
                }
                else if (expected[p] == 0 && returned[c][p] != 0)
                {
                    violations.Add($"consumer {c}: page {p} returned but never published");
                }
            }
        }

        return violations;
    }

    /// <summary>Counts each page returned; when asked, drops the first run it is handed (a lossy consumer).</summary>
    private struct CountingSink(int[] counts, ulong windowBase, bool drop) : IDirtyRunSink
    {
        public bool Dropped { get; private set; }

        public bool TryAccept(DirtyRun run)
        {
            if (drop && !Dropped)
            {
                Dropped = true;
                return true;
            }

            for (ulong p = run.FirstPage; p < run.EndPage; p++)
            {
                if (p >= windowBase && p < windowBase + WindowPages)
                {
                    counts[p - windowBase]++;
                }
            }

            return true;
        }
    }
}
