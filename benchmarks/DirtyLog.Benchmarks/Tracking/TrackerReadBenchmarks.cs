// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Tracking;

namespace DirtyLog.Benchmarks.Tracking;

/// <summary>Which tracker a benchmark reads through.</summary>
public enum TrackerKind
{
    /// <summary>The IOMMU tracker over the emulated HWPT (4 KiB entries).</summary>
    Iommu,

    /// <summary>The device tracker over the emulated DMA device (4 KiB granules).</summary>
    Device,
}

/// <summary>
/// Reading 1 GiB of IOVA through a tracker into the shared bitmap, against the emulator's raw report into a plain
/// buffer in the same run: the tracker's own cost (zeroing, chunking, merging) above the report it wraps.
/// </summary>
[InvocationCount(1)]
public class TrackerReadBenchmarks
{
    private const ulong GiB = 1UL << 30;
    private const ulong Iova = 1UL << 32;

    private EmulatedGuestMemory _memory = null!;
    private EmulatedHwpt _hwpt = null!;
    private EmulatedDmaDevice _device = null!;
    private IDirtyTracker _tracker = null!;
    private SparseDirtyBitmap _shared = null!;
    private ulong[] _raw = [];
    private ulong[] _dirtyPages = [];

    /// <summary>The tracker read.</summary>
    [Params(TrackerKind.Iommu, TrackerKind.Device)]
    public TrackerKind Tracker { get; set; }

    /// <summary>Percentage of the 262,144 pages dirty.</summary>
    [Params(0.1, 100)]
    public double DirtyPercent { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _memory = new EmulatedGuestMemory(GiB);
        var iommu = new EmulatedIommu(_memory);
        uint ioas = iommu.AllocateIoas();
        _hwpt = iommu.AllocateHwpt(ioas, dirtyTracking: true);
        iommu.Map(ioas, Iova, 0, GiB, maxEntrySize: 4096);
        _device = new EmulatedDmaDevice(_hwpt);
        var mapped = new[] { new AddressRange(Iova, GiB) };
        if (Tracker == TrackerKind.Iommu)
        {
            var tracker = new IommuTracker(_hwpt);
            tracker.SetMappedRanges(mapped);
            _tracker = tracker;
        }
        else
        {
            var tracker = new DeviceTracker(_device);
            tracker.SetMappedRanges(mapped);
            _tracker = tracker;
        }

        _tracker.StartTracking();
        _shared = new SparseDirtyBitmap(48);
        _raw = new ulong[GiB / 4096 / 64];
        var random = new XorShift(5);
        int count = (int)(GiB / 4096 * DirtyPercent / 100);
        _dirtyPages = new ulong[count];
        for (int i = 0; i < count; i++)
        {
            _dirtyPages[i] = DirtyPercent >= 100 ? (ulong)i : random.Below(GiB / 4096);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _tracker.Dispose();
        _shared.Dispose();
        _memory.Dispose();
    }

    [IterationSetup]
    public void Dirty()
    {
        var sink = default(CountingSink);
        _shared.Harvest(ref sink);
        foreach (ulong page in _dirtyPages)
        {
            _device.DmaWriteUInt64(Iova + (page * 4096), page);
        }
    }

    [Benchmark(Baseline = true)]
    public ulong RawReport()
    {
        Array.Clear(_raw);
        if (Tracker == TrackerKind.Iommu)
        {
            _hwpt.GetDirtyBitmap(Iova, GiB, 4096, _raw, noClear: false);
        }
        else
        {
            _device.Report(Iova, GiB, 4096, _raw);
        }

        return _raw[0];
    }

    [Benchmark]
    public ulong ThroughTracker() => _tracker.ReadDirty(new AddressRange(Iova, GiB), _shared, DirtyReadMode.Clear);
}
