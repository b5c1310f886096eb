// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Concurrent;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;

namespace DirtyLog.Benchmarks.Bitmaps;

/// <summary>
/// Random single-page marks over a 1 TiB guest, by 1 and 2 threads. Each invocation makes 2^20 marks in all
/// (split between the threads) into a cleared bitmap, so that every case sees the same fill.
/// </summary>
[InvocationCount(1)]
public class RandomMarkBenchmarks
{
    private const int Marks = 1 << 20;
    private ulong[] _pages = [];
    private GuestBitmaps _bitmaps = null!;
    private ConcurrentDictionary<ulong, byte> _dictionary = null!;
    private PairedWorker _pair = null!;

    /// <summary>Writer threads.</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new XorShift(7);
        _pages = new ulong[Marks];
        for (int i = 0; i < Marks; i++)
        {
            _pages[i] = random.Below(DirtyPatterns.GuestPages);
        }

        _bitmaps = new GuestBitmaps();
        _dictionary = new ConcurrentDictionary<ulong, byte>();
        _pair = new PairedWorker();
    }

    [IterationSetup]
    public void Clear()
    {
        _bitmaps.Clear();
        _dictionary.Clear();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _bitmaps.Dispose();
        _pair.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Marks)]
    public void Dense() => Split(static (self, from, to) =>
    {
        for (int i = from; i < to; i++)
        {
            self._bitmaps.Dense.Mark(self._pages[i]);
        }
    });

    [Benchmark(OperationsPerInvoke = Marks)]
    public void Sparse() => Split(static (self, from, to) =>
    {
        for (int i = from; i < to; i++)
        {
            self._bitmaps.Sparse.Mark(self._pages[i]);
        }
    });

    [Benchmark(OperationsPerInvoke = Marks)]
    public void ConcurrentDictionary() => Split(static (self, from, to) =>
    {
        for (int i = from; i < to; i++)
        {
            self._dictionary.TryAdd(self._pages[i], 0);
        }
    });

    private void Split(System.Action<RandomMarkBenchmarks, int, int> work)
    {
        if (Threads == 1)
        {
            work(this, 0, Marks);
        }
        else
        {
            _pair.Run(() => work(this, 0, Marks / 2), () => work(this, Marks / 2, Marks));
        }
    }
}
