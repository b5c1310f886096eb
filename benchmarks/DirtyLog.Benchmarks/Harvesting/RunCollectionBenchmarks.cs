// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using BenchmarkDotNet.Attributes;
using CommunityToolkit.HighPerformance.Buffers;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;

namespace DirtyLog.Benchmarks.Harvesting;

/// <summary>
/// How a round collects its runs into a pooled buffer: the harvester's own sink (an array rented from the shared
/// pool, doubled when full) against CommunityToolkit.HighPerformance's <see cref="ArrayPoolBufferWriter{T}"/> in the
/// same run, for the 20,971 runs of the harvester benchmark's round, growing from the 256-run first guess.
/// </summary>
[MemoryDiagnoser]
public class RunCollectionBenchmarks
{
    /// <summary>Runs in the round.</summary>
    [Params(20_971)]
    public int Runs { get; set; }

    [Benchmark(Baseline = true)]
    public int PooledRunSink()
    {
        var sink = new PooledRunSink(256);
        for (int i = 0; i < Runs; i++)
        {
            sink.TryAccept(new DirtyRun((ulong)i * 4, 2));
        }

        int count = sink.Count;
        ArrayPool<DirtyRun>.Shared.Return(sink.Runs);
        return count;
    }

    [Benchmark]
    public int ToolkitArrayPoolBufferWriter()
    {
        using var writer = new ArrayPoolBufferWriter<DirtyRun>(256);
        for (int i = 0; i < Runs; i++)
        {
            writer.GetSpan(1)[0] = new DirtyRun((ulong)i * 4, 2);
            writer.Advance(1);
        }

        return writer.WrittenCount;
    }
}
