// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Harvesting;
using DirtyLog.Tracking;

namespace DirtyLog.Benchmarks.Harvesting;

/// <summary>
/// One round over eight emulated trackers (1 GiB each, 1% of it dirty, a scripted report latency): the trackers read
/// one after another into the shared bitmap and harvested by hand (the baseline, as QEMU and Cloud Hypervisor do),
/// the slowest tracker alone, and the harvester's parallel round without and with attribution, in the same run.
/// </summary>
[InvocationCount(1)]
[WarmupCount(3)]
[IterationCount(15)]
public class HarvesterBenchmarks
{
    private const int Trackers = 8;
    private const ulong GiB = 1UL << 30;

    private readonly EmulatedTracker[] _trackers = new EmulatedTracker[Trackers];
    private SparseDirtyBitmap _shared = null!;
    private ParallelHarvester _plain = null!;
    private ParallelHarvester _attributing = null!;
    private EvenSpread[] _spreads = [];

    /// <summary>Each tracker's report latency, in milliseconds.</summary>
    [Params(0, 10)]
    public int LatencyMs { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _shared = new SparseDirtyBitmap(40);
        _plain = new ParallelHarvester(_shared, new HarvesterOptions { Attribution = false });
        _attributing = new ParallelHarvester(_shared, new HarvesterOptions { Attribution = true });
        _spreads = new EvenSpread[Trackers];
        for (int i = 0; i < Trackers; i++)
        {
            _trackers[i] = new EmulatedTracker($"t{i}", new AddressRange((ulong)i * GiB, GiB)) { Reports = { Delay = TimeSpan.FromMilliseconds(LatencyMs) } };
            _plain.Add(_trackers[i], TrackerFaultPolicy.FailRound);
            _attributing.Add(_trackers[i], TrackerFaultPolicy.FailRound);
            _spreads[i] = new EvenSpread(GiB / 4096, 0, 1);
        }

        _plain.StartTracking();
        TierUp.Run(() =>
        {
            Dirty();
            Serial();
            Dirty();
            Parallel();
            Dirty();
            ParallelWithAttribution();
        });
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _plain.Dispose();
        _attributing.Dispose();
        _shared.Dispose();
        foreach (EmulatedTracker t in _trackers)
        {
            t.Dispose();
        }
    }

    [IterationSetup]
    public void Dirty()
    {
        for (int i = 0; i < Trackers; i++)
        {
            ulong first = _spreads[i].NextFirst();
            for (ulong k = 0; k < _spreads[i].Count; k++)
            {
                _trackers[i].Write(((ulong)i * GiB) + ((first + (k * _spreads[i].Stride)) * 4096));
            }
        }
    }

    [Benchmark(Baseline = true)]
    public ulong Serial()
    {
        foreach (EmulatedTracker t in _trackers)
        {
            t.ReadDirty(t.Coverage[0], _shared, DirtyReadMode.Clear);
        }

        var sink = default(CountingSink);
        _shared.Harvest(ref sink);
        return sink.Pages;
    }

    [Benchmark]
    public ulong SlowestAlone()
    {
        _trackers[0].ReadDirty(_trackers[0].Coverage[0], _shared, DirtyReadMode.Clear);
        var sink = default(CountingSink);
        _shared.Harvest(ref sink);
        return sink.Pages;
    }

    [Benchmark]
    public ulong Parallel()
    {
        using HarvestRound round = _plain.RunRound(null, CancellationToken.None);
        round.Commit();
        return round.Pages;
    }

    [Benchmark]
    public ulong ParallelWithAttribution()
    {
        using HarvestRound round = _attributing.RunRound(null, CancellationToken.None);
        round.Commit();
        return round.Pages;
    }
}
