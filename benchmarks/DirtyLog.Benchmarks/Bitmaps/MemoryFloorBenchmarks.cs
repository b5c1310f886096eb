// Licensed under the MIT License. See LICENSE in the repository root.

using System.Numerics;
using System.Runtime.InteropServices;
using System;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;

namespace DirtyLog.Benchmarks.Bitmaps;

/// <summary>The memory limit for one pass over a 1 TiB guest's 32 MiB bitmap: a plain vector scan and a plain clear.</summary>
[InvocationCount(1)]
public class MemoryFloorBenchmarks
{
    private ulong[] _words = [];
    private ulong _evicted;

    [GlobalSetup]
    public void Setup() => _words = DirtyPatterns.Build(DirtyPattern.Random0_01);

    [IterationSetup]
    public void Evict() => _evicted = CacheEvictor.Evict();

    [Benchmark(Baseline = true)]
    public ulong Scan()
    {
        var vectors = MemoryMarshal.Cast<ulong, Vector<ulong>>(_words);
        Vector<ulong> any = default;
        for (int i = 0; i < vectors.Length; i++)
        {
            any |= vectors[i];
        }

        return any[0] + _evicted;
    }

    [Benchmark]
    public void Clear() => _words.AsSpan().Clear();
}
