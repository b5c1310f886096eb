// Licensed under the MIT License. See LICENSE in the repository root.

using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;

namespace DirtyLog.Benchmarks.Bitmaps;

/// <summary>
/// Harvest (read and clear, enumerate runs) of a 1 TiB guest at the dirty patterns of research/peers.md,
/// refilled before each iteration and with caches evicted, as in the peers' figures.
/// </summary>
[InvocationCount(1)]
public class HarvestBenchmarks
{
    private ulong[] _pattern = [];
    private GuestBitmaps _bitmaps = null!;

    /// <summary>Which pages are dirty.</summary>
    [Params(DirtyPattern.Clean, DirtyPattern.Random0_01, DirtyPattern.Random0_1, DirtyPattern.Random1,
        DirtyPattern.Random10, DirtyPattern.Full, DirtyPattern.Clustered1)]
    public DirtyPattern Pattern { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pattern = DirtyPatterns.Build(Pattern);
        _bitmaps = new GuestBitmaps();
    }

    [GlobalCleanup]
    public void Cleanup() => _bitmaps.Dispose();

    [IterationSetup(Target = nameof(Dense))]
    public void FillDense() => _bitmaps.FillDense(_pattern);

    [IterationSetup(Target = nameof(Sparse))]
    public void FillSparse() => _bitmaps.FillSparse(_pattern);

    [Benchmark(Baseline = true)]
    public ulong Dense() => _bitmaps.HarvestDense();

    [Benchmark]
    public ulong Sparse() => _bitmaps.HarvestSparse();
}
