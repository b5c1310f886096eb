// Licensed under the MIT License. See LICENSE in the repository root.

using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Baselines;
using DirtyLog.Benchmarks.Infrastructure;
using DirtyLog.Bitmaps;

namespace DirtyLog.Benchmarks.Bitmaps;

/// <summary>2 MiB range marks (512 pages) at random places of a 1 TiB guest, aligned and unaligned, into a cleared bitmap.</summary>
[InvocationCount(1)]
public class RangeMarkBenchmarks
{
    private const int Ranges = 1 << 16;
    private const ulong RangePages = 512;
    private ulong[] _starts = [];
    private SparseDirtyBitmap _sparse = null!;
    private DenseAtomicBitmap _dense = null!;

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

        _sparse = new SparseDirtyBitmap(40);
        _sparse.MarkRange(0, DirtyPatterns.GuestPages);
        _dense = new DenseAtomicBitmap(DirtyPatterns.GuestPages);
    }

    [IterationSetup]
    public void Clear()
    {
        var sink = default(CountingSink);
        _sparse.Harvest(ref sink);
        _dense.Clear();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sparse.Dispose();
        _dense.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Ranges)]
    public void Dense()
    {
        foreach (ulong start in _starts)
        {
            _dense.MarkRange(start, RangePages);
        }
    }

    [Benchmark(OperationsPerInvoke = Ranges)]
    public void Sparse()
    {
        foreach (ulong start in _starts)
        {
            _sparse.MarkRange(start, RangePages);
        }
    }
}
