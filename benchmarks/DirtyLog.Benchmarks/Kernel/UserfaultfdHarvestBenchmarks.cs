// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Tracking;

namespace DirtyLog.Benchmarks.Kernel;

/// <summary>
/// Harvest of 1 GiB of memory written by this process under userfaultfd async write-protect: the raw
/// <c>PAGEMAP_SCAN</c> (written pages, re-protected in the same call, re-issued from <c>walk_end</c>, into one buffer
/// large enough for every region) against <see cref="UserfaultfdTracker"/> reading into the shared bitmap, in the
/// same run.
/// </summary>
[InvocationCount(1)]
[WarmupCount(2)]
[IterationCount(15)]
public class UserfaultfdHarvestBenchmarks
{
    private const ulong GiB = 1UL << 30;

    private AnonymousMapping _memory = null!;
    private UserfaultfdTracker _tracker = null!;
    private PagemapScanner _scanner = null!;
    private SparseDirtyBitmap _shared = null!;
    private EvenSpread _spread = null!;
    private PageRegion[] _regions = [];
    private ulong _value;

    /// <summary>Percentage of the 262,144 pages written before each harvest.</summary>
    [Params(0.1, 10, 100)]
    public double DirtyPercent { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _memory = new AnonymousMapping(GiB);
        for (ulong offset = 0; offset < GiB; offset += 4096)
        {
            _memory.WriteUInt64(offset, 0); // populate: the first touch is not what is measured
        }

        _tracker = new UserfaultfdTracker([new HostMemoryRegion(_memory.Address, 0, GiB)]);
        _tracker.StartTracking();
        _scanner = PagemapScanner.OpenSelf();
        _regions = new PageRegion[GiB / 4096];
        _shared = new SparseDirtyBitmap(48);
        _spread = new EvenSpread(GiB / 4096, 0, DirtyPercent);
        TierUp.Run(() =>
        {
            _memory.WriteUInt64(0, 1);
            _tracker.ReadDirty(new AddressRange(0, GiB), _shared, DirtyReadMode.Clear);
            RawScan();
        });
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _tracker.Dispose();
        _scanner.Dispose();
        _shared.Dispose();
        _memory.Dispose();
    }

    [IterationSetup]
    public void Dirty()
    {
        _shared.DiscardAll();
        _value++;
        ulong first = _spread.NextFirst();
        for (ulong i = 0; i < _spread.Count; i++)
        {
            _memory.WriteUInt64((first + (i * _spread.Stride)) * 4096, _value);
        }
    }

    [Benchmark(Baseline = true)]
    public ulong RawScan()
    {
        ulong start = (ulong)_memory.Address;
        ulong end = start + GiB;
        ulong regions = 0;
        for (ulong cursor = start; cursor < end;)
        {
            regions += (ulong)_scanner.ScanWritten(cursor, end, _regions, reprotect: true, out ulong walkEnd);
            cursor = walkEnd > cursor ? walkEnd : end; // the kernel may stop early: go on from walk_end
        }

        return regions;
    }

    [Benchmark]
    public ulong ThroughTracker() => _tracker.ReadDirty(new AddressRange(0, GiB), _shared, DirtyReadMode.Clear);
}
