// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;
using DirtyLog.Bitmaps;
using DirtyLog.Consumers;

namespace DirtyLog.Benchmarks.Harvesting;

/// <summary>
/// What a second consumer of the same trackers costs a round: the round's own take of its dirty set from the shared
/// bitmap (the baseline) against the same take plus its publication to one more consumer and that consumer taking its
/// changes, 1 TiB guest, cold caches. The kernel is read once either way, so its cost is left out of both.
/// </summary>
[InvocationCount(1)]
public class ConsumerFanOutBenchmarks
{
    private ulong[] _pattern = [];
    private DirtyRun[] _runs = [];
    private SparseDirtyBitmap _shared = null!;
    private DirtyConsumerSet _set = null!;
    private DirtyConsumer _second = null!;

    /// <summary>The round's dirty set.</summary>
    [Params(DirtyPattern.Random0_1, DirtyPattern.Random1, DirtyPattern.Clustered1)]
    public DirtyPattern Pattern { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pattern = DirtyPatterns.Build(Pattern);
        _runs = new DirtyRun[DirtyPatterns.GuestPages / 64];
        _shared = new SparseDirtyBitmap(40);
        _set = new DirtyConsumerSet(40);
        _second = _set.Register("second");

        // Touch both bitmaps once, as a running guest's first round does.
        _shared.MarkRange(0, DirtyPatterns.GuestPages);
        _set.Publish([new DirtyRun(0, DirtyPatterns.GuestPages)]);
        _shared.Harvest(_runs);
        _second.TakeChanges(ref _discard);
    }

    private DiscardingSink _discard;

    [IterationSetup]
    public void Fill()
    {
        _shared.MergeBitmap(_pattern, 0, DirtyPatterns.GuestPages);
        CacheEvictor.Evict();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _set.Dispose();
        _shared.Dispose();
    }

    [Benchmark(Baseline = true)]
    public ulong RoundOnly() => _shared.Harvest(_runs).Pages;

    [Benchmark]
    public ulong RoundAndSecondConsumer()
    {
        HarvestResult round = _shared.Harvest(_runs);
        _set.Publish(_runs.AsSpan(0, checked((int)round.Runs)));
        return _second.TakeChanges(ref _discard).Pages;
    }

    private struct DiscardingSink : IDirtyRunSink
    {
        public readonly bool TryAccept(DirtyRun run) => true;
    }
}
