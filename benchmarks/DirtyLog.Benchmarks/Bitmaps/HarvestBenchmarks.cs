// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Baselines;
using DirtyLog.Benchmarks.Infrastructure;
using DirtyLog.Bitmaps;

namespace DirtyLog.Benchmarks.Bitmaps;

/// <summary>
/// Harvest (read and clear, enumerate runs) of a 1 TiB guest at the dirty patterns of research/peers.md,
/// refilled before each iteration and with caches evicted, as in the peers' figures.
/// </summary>
[InvocationCount(1)]
public class HarvestBenchmarks
{
    private ulong[] _pattern = [];
    private SparseDirtyBitmap _sparse = null!;
    private DenseAtomicBitmap _dense = null!;

    /// <summary>Which pages are dirty.</summary>
    [Params(DirtyPattern.Clean, DirtyPattern.Random0_01, DirtyPattern.Random0_1, DirtyPattern.Random1,
        DirtyPattern.Random10, DirtyPattern.Full, DirtyPattern.Clustered1)]
    public DirtyPattern Pattern { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pattern = DirtyPatterns.Build(Pattern);
        _sparse = new SparseDirtyBitmap(40);
        _dense = new DenseAtomicBitmap(DirtyPatterns.GuestPages);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sparse.Dispose();
        _dense.Dispose();
    }

    [IterationSetup(Target = nameof(Dense))]
    public void FillDense()
    {
        _pattern.AsSpan().CopyTo(_dense.Words);
        CacheEvictor.Evict();
    }

    [IterationSetup(Target = nameof(Sparse))]
    public void FillSparse()
    {
        var sink = default(CountingSink);
        _sparse.Harvest(ref sink);
        _sparse.MergeBitmap(_pattern, 0, DirtyPatterns.GuestPages);
        CacheEvictor.Evict();
    }

    [Benchmark(Baseline = true)]
    public ulong Dense()
    {
        var sink = default(CountingSink);
        _dense.Harvest(ref sink);
        return sink.Pages;
    }

    [Benchmark]
    public ulong Sparse()
    {
        var sink = default(CountingSink);
        _sparse.Harvest(ref sink);
        return sink.Pages;
    }
}
