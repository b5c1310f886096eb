// Licensed under the MIT License. See LICENSE in the repository root.

using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;

namespace DirtyLog.Benchmarks.Bitmaps;

/// <summary>2 MiB range marks (512 pages) at random places of a 1 TiB guest, aligned and unaligned, into a cleared bitmap.</summary>
[InvocationCount(1)]
public class RangeMarkBenchmarks
{
    private const int Ranges = 1 << 16;
    private const ulong RangePages = 512;
    private ulong[] _starts = [];
    private GuestBitmaps _bitmaps = null!;

    /// <summary>Whether ranges start on a 2 MiB boundary.</summary>
    [Params(true, false)]
    public bool Aligned { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new XorShift(11);
        _starts = new ulong[Ranges];
        for (int i = 0; i < Ranges; i++)
        {
            _starts[i] = Aligned
                ? random.Below(DirtyPatterns.GuestPages / RangePages) * RangePages
                : random.Below(DirtyPatterns.GuestPages / 2) + 1 + (random.Below(64) * 7);
        }

        _bitmaps = new GuestBitmaps();
    }

    /// <summary>A round's harvest took everything; then the ranges meet cold caches.</summary>
    [IterationSetup]
    public void Clear()
    {
        _bitmaps.Clear();
        CacheEvictor.Evict();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _bitmaps.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Ranges)]
    public void Dense()
    {
        foreach (ulong start in _starts)
        {
            _bitmaps.Dense.MarkRange(start, RangePages);
        }
    }

    [Benchmark(OperationsPerInvoke = Ranges)]
    public void Sparse()
    {
        foreach (ulong start in _starts)
        {
            _bitmaps.Sparse.MarkRange(start, RangePages);
        }
    }
}
