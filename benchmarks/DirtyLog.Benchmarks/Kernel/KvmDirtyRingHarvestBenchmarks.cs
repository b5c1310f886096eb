// Licensed under the MIT License. See LICENSE in the repository root.

using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Benchmarks.Kernel;

/// <summary>
/// Harvest of a 1 GiB slot through a 65,536-entry KVM dirty ring written by a real guest: the raw ring walk (acquire
/// loads, release stores) and <c>KVM_RESET_DIRTY_RINGS</c> against <see cref="KvmDirtyRingTracker"/> reading into the
/// shared bitmap (decode through the slot table, pending set, merge), in the same run.
/// </summary>
/// <remarks>
/// A ring holds at most 65,536 entries (256 MiB of pages), so one harvest cannot see 100% of 1 GiB. The largest case
/// is 10%: on this kind of host a run of about 50,000 new pages already ends in a ring-full exit before it halts. A
/// whole dirty slot is harvested as several such batches, each costing what one of these does.
/// </remarks>
[BenchmarkCategory(Categories.Kvm)]
[InvocationCount(1)]
[WarmupCount(2)]
[IterationCount(15)]
public class KvmDirtyRingHarvestBenchmarks
{
    private const ulong GiB = 1UL << 30;
    private const uint RingEntries = 65536;
    private const uint TouchBatch = 16384;

    private TinyGuest _guest = null!;
    private KvmDirtyRing _ring = null!;
    private KvmDirtyRingTracker _tracker = null!;
    private SparseDirtyBitmap _shared = null!;
    private EvenSpread _spread = null!;
    private ulong _value;
    private ulong _entries;

    /// <summary>Percentage of the slot's 262,144 pages the guest writes before each harvest.</summary>
    [Params(0.1, 1, 10)]
    public double DirtyPercent { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _guest = new TinyGuest(GiB, dirtyRingEntries: RingEntries);
        _ring = _guest.Vcpu.DirtyRing!;
        _tracker = new KvmDirtyRingTracker(new KvmVmPort(_guest.Vm, [_ring]));
        _shared = new SparseDirtyBitmap(48);
        _spread = new EvenSpread(_guest.Pages, 2, DirtyPercent);
        _tracker.StartTracking();

        // Touch every page once, in batches the ring holds, then start from a clean log.
        for (ulong first = 2; first < _guest.Pages; first += TouchBatch)
        {
            _guest.WriteStrided(first, 1, (uint)System.Math.Min(TouchBatch, _guest.Pages - first), 0);
            _tracker.Reap();
        }

        _tracker.ReadDirty(new AddressRange(0, GiB), _shared, DirtyReadMode.Clear);
        TierUp.Run(() =>
        {
            _guest.WriteStrided(2, 64, 64, 0);
            _tracker.ReadDirty(new AddressRange(0, GiB), _shared, DirtyReadMode.Clear);
            _guest.WriteStrided(2, 64, 64, 0);
            RawRing();
        });
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _tracker.Dispose();
        _shared.Dispose();
        _guest.Dispose();
    }

    [IterationSetup]
    public void Dirty()
    {
        _shared.DiscardAll();
        _guest.WriteStrided(_spread.NextFirst(), _spread.Stride, _spread.Count, ++_value);
    }

    [Benchmark(Baseline = true)]
    public ulong RawRing()
    {
        var visitor = new SumVisitor();
        int n = _ring.Harvest(ref visitor);
        _entries += visitor.Sum;
        return (ulong)(n + _guest.Vm.ResetDirtyRings());
    }

    [Benchmark]
    public ulong ThroughTracker() => _tracker.ReadDirty(new AddressRange(0, GiB), _shared, DirtyReadMode.Clear);

    /// <summary>The least a consumer of the ring does per entry: read it.</summary>
    private struct SumVisitor : IDirtyRingVisitor
    {
        public ulong Sum;

        public void Visit(uint slot, ulong offset) => Sum += offset;
    }
}
