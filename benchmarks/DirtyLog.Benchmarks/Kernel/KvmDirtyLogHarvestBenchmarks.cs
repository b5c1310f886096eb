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
/// Harvest of a 1 GiB slot's KVM dirty log written by a real guest: the raw ioctls (GET, and CLEAR in manual-protect
/// mode) against <see cref="KvmDirtyLogTracker"/> reading into the shared bitmap, in the same run. The tracker's cost
/// above the kernel is its merge into the shared bitmap.
/// </summary>
[BenchmarkCategory(Categories.Kvm)]
[InvocationCount(1)]
[WarmupCount(2)]
[IterationCount(15)]
public class KvmDirtyLogHarvestBenchmarks
{
    private const ulong GiB = 1UL << 30;

    private TinyGuest _guest = null!;
    private KvmDirtyLogTracker _tracker = null!;
    private SparseDirtyBitmap _shared = null!;
    private EvenSpread _spread = null!;
    private ulong[] _raw = [];
    private ulong _value;

    /// <summary>Whether the VM enabled manual dirty-log protection.</summary>
    [Params(false, true)]
    public bool ManualProtect { get; set; }

    /// <summary>Percentage of the slot's 262,144 pages the guest writes before each harvest.</summary>
    [Params(0.1, 10, 100)]
    public double DirtyPercent { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _guest = new TinyGuest(GiB, manualDirtyLogProtect: ManualProtect);
        _tracker = new KvmDirtyLogTracker(new KvmVmPort(_guest.Vm), 0);
        _shared = new SparseDirtyBitmap(48);
        _raw = new ulong[_guest.Pages / 64];
        _spread = new EvenSpread(_guest.Pages, 2, DirtyPercent);

        // The first touch of a page costs far more than a write fault: touch them all before measuring.
        _guest.WriteStrided(2, 1, (uint)_guest.Pages - 2, 0);
        _tracker.StartTracking();
        TierUp.Run(() =>
        {
            _guest.WriteStrided(2, 64, 64, 0);
            _tracker.ReadDirty(new AddressRange(0, GiB), _shared, DirtyReadMode.Clear);
            RawIoctlThenScan();
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
    public ulong RawIoctl()
    {
        _guest.Vm.GetDirtyLog(0, _raw);
        if (ManualProtect)
        {
            _guest.Vm.ClearDirtyLog(0, 0, (uint)_guest.Pages, _raw);
        }

        return _raw[^1];
    }

    /// <summary>The raw ioctls, then one pass over the bitmap they returned: the least any consumer does.</summary>
    [Benchmark]
    public ulong RawIoctlThenScan()
    {
        RawIoctl();
        ulong dirty = 0;
        foreach (ulong word in _raw)
        {
            dirty += (ulong)System.Numerics.BitOperations.PopCount(word);
        }

        return dirty;
    }

    [Benchmark]
    public ulong ThroughTracker() => _tracker.ReadDirty(new AddressRange(0, GiB), _shared, DirtyReadMode.Clear);

    /// <summary>
    /// The stop-copy read: in manual-protect mode no CLEAR (nothing re-protected); classic mode has no such read. Its
    /// pages stay logged, so at low percentages they accumulate over iterations: compare it at 100%.
    /// </summary>
    [Benchmark]
    public ulong ThroughTrackerFinal() =>
        _tracker.ReadDirty(new AddressRange(0, GiB), _shared, ManualProtect ? DirtyReadMode.NoClear : DirtyReadMode.Clear);
}
