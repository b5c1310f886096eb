// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Bitmaps;
using NUnit.Framework;

namespace DirtyLog.Tests.Bitmaps;

/// <summary>
/// Writers mark (single pages, ranges, merged bitmaps) while a harvester runs every kind of harvest in a loop.
/// The schedule is deterministic in its phases (barriers, no sleeps) and its operations (seeded); each round
/// ends with a harvest that starts after every writer finished, so per round and per page:
/// marked ⇒ returned at least once; returned ≤ times marked; never marked ⇒ never returned.
/// </summary>
[TestFixture]
[Category("Unit")]
[Category("Concurrency")]
public class SparseDirtyBitmapConcurrencyTests
{
    private const int WindowPages = 1 << 18;

    // A bound on every wait, so that a bug that stalls a thread fails the test instead of hanging it.
    private static readonly TimeSpan s_deadline = TimeSpan.FromMinutes(2);

    // 48 bits (2^36 pages) is the flat layout's widest space; 64 bits takes the radix tree.
    [TestCase(1, 2, 48)]
    [TestCase(2, 2, 48)]
    [TestCase(3, 3, 48)]
    [TestCase(4, 2, 48)]
    [TestCase(1, 2, 64)]
    [TestCase(3, 3, 64)]
    public void EveryMarkIsHarvestedOnceAndNothingElseIsReturned(int seed, int writers, int addressWidth)
    {
        var violations = StressTest.Run(seed, writers, addressWidth, rounds: 40, opsPerRound: 4000, lossyFinalHarvest: false);
        Assert.That(violations, Is.Empty);
    }

    [TestCase(48)]
    [TestCase(64)]
    public void AHarvestThatDropsOneClearedWordIsCaught(int addressWidth)
    {
        var violations = StressTest.Run(seed: 5, writers: 2, addressWidth, rounds: 10, opsPerRound: 2000, lossyFinalHarvest: true);
        Assert.That(violations, Has.Some.Contains("lost"));
    }

    private sealed class StressTest
    {
        private readonly SparseDirtyBitmap _bitmap;
        private readonly int[][] _marks;
        private readonly int[] _returned = new int[WindowPages];
        private readonly List<string> _violations = new();
        private readonly ulong _base;
        private readonly int _seed;
        private int _remaining;
        private long _outside;

        private StressTest(int seed, int writers, int addressWidth)
        {
            _bitmap = new SparseDirtyBitmap(addressWidth);
            _seed = seed;
            _marks = new int[writers][];
            for (int i = 0; i < writers; i++)
            {
                _marks[i] = new int[WindowPages];
            }

            // A window at a random, unaligned place: several summary levels above it in either layout.
            _base = (ulong)new Random(seed).NextInt64(1L << 35) + 77;
        }

        public static List<string> Run(int seed, int writers, int addressWidth, int rounds, int opsPerRound, bool lossyFinalHarvest)
        {
            var test = new StressTest(seed, writers, addressWidth);
            using (test._bitmap)
            {
                test.Execute(writers, rounds, opsPerRound, lossyFinalHarvest);
            }

            return test._violations;
        }

        private void Execute(int writers, int rounds, int opsPerRound, bool lossy)
        {
            using var start = new Barrier(writers + 1);
            var failures = new List<Exception>();
            var threads = new Thread[writers];
            for (int w = 0; w < writers; w++)
            {
                int id = w;
                threads[w] = new Thread(() =>
                {
                    var random = new Random((_seed * 1000) + id);
                    for (int round = 0; round < rounds; round++)
                    {
                        if (!start.SignalAndWait(s_deadline))
                        {
                            return;
                        }

                        try
                        {
                            for (int op = 0; op < opsPerRound; op++)
                            {
                                WriteOne(random, _marks[id]);
                            }
                        }
                        catch (Exception e)
                        {
                            lock (failures)
                            {
                                failures.Add(e);
                            }
                        }

                        Interlocked.Decrement(ref _remaining);
                    }
                })
                { IsBackground = true, Name = $"writer {id}" };
            }

            foreach (Thread t in threads)
            {
                t.Start();
            }

            var harvestRandom = new Random(-_seed);
            for (int round = 0; round < rounds; round++)
            {
                Volatile.Write(ref _remaining, writers);
                if (!start.SignalAndWait(s_deadline))
                {
                    _violations.Add($"round {round}: writers did not reach the start barrier in {s_deadline}");
                    break;
                }

                var clock = System.Diagnostics.Stopwatch.StartNew();
                while (Volatile.Read(ref _remaining) > 0 && clock.Elapsed < s_deadline)
                {
                    HarvestOne(harvestRandom, lossy);
                }

                if (Volatile.Read(ref _remaining) > 0)
                {
                    // The writers time out at the next barrier and leave; the joins below wait for them.
                    _violations.Add($"round {round}: writers did not finish in {s_deadline}");
                    break;
                }

                // Every mark of this round completed before this harvest started: it must return the rest.
                var sink = new Counter(this);
                HarvestResult final = lossy ? HarvestLosingTheFirstRun(sink) : _bitmap.Harvest(ref sink);
                if (!final.Completed)
                {
                    _violations.Add($"round {round}: the final harvest did not complete");
                }

                Verify(round);
            }

            foreach (Thread t in threads)
            {
                if (!t.Join(s_deadline))
                {
                    _violations.Add($"{t.Name} did not finish in {s_deadline}");
                }
            }

            foreach (Exception e in failures)
            {
                _violations.Add($"writer threw {e}");
            }
        }

        private void WriteOne(Random random, int[] marks)
        {
            // Half the operations hit a hot 8,192-page zone, so writers share words, lines and leaves.
            int zone = random.Next(2) == 0 ? 8192 : WindowPages;
            int kind = random.Next(10);
            if (kind < 6)
            {
                int offset = random.Next(zone);
                _bitmap.Mark(_base + (ulong)offset);
                marks[offset]++;
            }
            else if (kind < 8)
            {
                int count = random.Next(1, 700);
                int offset = random.Next(zone - count);
                _bitmap.MarkRange(_base + (ulong)offset, (ulong)count);
                for (int i = 0; i < count; i++)
                {
                    marks[offset + i]++;
                }
            }
            else
            {
                int count = random.Next(1, 16 * 64);
                int offset = random.Next(zone - count);
                Span<ulong> words = stackalloc ulong[(count + 63) / 64];
                bool full = random.Next(4) == 0; // full words take the merge's plain-store path
                for (int i = 0; i < words.Length; i++)
                {
                    words[i] = full ? ~0UL : (ulong)random.NextInt64() & (ulong)random.NextInt64();
                }

                _bitmap.MergeBitmap(words, _base + (ulong)offset, (ulong)count);
                for (int i = 0; i < count; i++)
                {
                    if ((words[i / 64] & (1UL << (i % 64))) != 0)
                    {
                        marks[offset + i]++;
                    }
                }
            }
        }

        private void HarvestOne(Random random, bool lossy)
        {
            switch (random.Next(3))
            {
                case 0:
                {
                    var sink = new Counter(this);
                    _ = lossy ? HarvestLosingTheFirstRun(sink) : _bitmap.Harvest(ref sink);
                    break;
                }

                case 1:
                {
                    // A tiny buffer: refusals and put-backs under concurrent marks.
                    Span<DirtyRun> buffer = stackalloc DirtyRun[3];
                    HarvestResult result;
                    do
                    {
                        result = _bitmap.Harvest(buffer);
                        for (int i = 0; i < (int)result.Runs; i++)
                        {
                            Count(buffer[i]);
                        }
                    }
                    while (!result.Completed && random.Next(4) != 0);
                    break;
                }

                default:
                {
                    ulong first = _base + (ulong)random.Next(WindowPages);
                    ulong count = (ulong)random.Next(1, 20000);
                    var sink = new Counter(this);
                    _bitmap.HarvestRange(first, count, ref sink);
                    break;
                }
            }
        }

        private void Count(DirtyRun run)
        {
            for (ulong p = run.FirstPage; p < run.EndPage; p++)
            {
                ulong offset = p - _base;
                if (p < _base || offset >= WindowPages)
                {
                    _outside++;
                    continue;
                }

                _returned[offset]++;
            }
        }

        private void Verify(int round)
        {
            int lost = 0, twice = 0, phantom = 0;
            for (int i = 0; i < WindowPages; i++)
            {
                int marked = 0;
                foreach (int[] m in _marks)
                {
                    marked += m[i];
                    m[i] = 0;
                }

                int returned = _returned[i];
                _returned[i] = 0;
                if (marked > 0 && returned == 0)
                {
                    lost++;
                }
                else if (returned > marked && marked > 0)
                {
                    twice++;
                }
                else if (marked == 0 && returned > 0)
                {
                    phantom++;
                }
            }

            if (lost > 0)
            {
                _violations.Add($"round {round}: {lost} marked pages lost");
            }

            if (twice > 0)
            {
                _violations.Add($"round {round}: {twice} pages returned more often than marked");
            }

            if (phantom > 0 || _outside > 0)
            {
                _violations.Add($"round {round}: {phantom + _outside} pages returned that were never marked");
                _outside = 0;
            }
        }

        /// <summary>A deliberately broken harvest: the first run it takes out of the bitmap is never reported.</summary>
        private HarvestResult HarvestLosingTheFirstRun(Counter counter)
        {
            var sink = new FirstRunLost(counter);
            return _bitmap.Harvest(ref sink);
        }

        private struct FirstRunLost(Counter inner) : IDirtyRunSink
        {
            private bool _lost;

            public bool TryAccept(DirtyRun run)
            {
                if (!_lost)
                {
                    _lost = true;
                    return true; // accepted, so cleared from the bitmap, and dropped
                }

                return inner.TryAccept(run);
            }
        }

        private readonly struct Counter : IDirtyRunSink
        {
            private readonly StressTest _test;

            public Counter(StressTest test) => _test = test;

            public bool TryAccept(DirtyRun run)
            {
                _test.Count(run);
                return true;
            }
        }
    }
}
