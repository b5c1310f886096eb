// Licensed under the MIT License. See LICENSE in the repository root.

using BenchmarkDotNet.Attributes;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Mapping;
using DirtyLog.Tracking;

namespace DirtyLog.Benchmarks.Mapping;

/// <summary>
/// A map and an unmap with its dirty sync through the correlator (IOMMU tracker read before the unmap, device tracker
/// after it), against the same map and unmap on the emulated IOMMU alone, in the same run; one DMA write in between
/// in both, so that the sync has a page to carry.
/// </summary>
public class UnmapBenchmarks
{
    private const ulong Iova = 1UL << 40;

    private EmulatedGuestMemory _memory = null!;
    private EmulatedIommu _iommu = null!;
    private EmulatedHwpt _hwpt = null!;
    private EmulatedDmaDevice? _device;
    private IommuTracker _iommuTracker = null!;
    private DeviceTracker? _deviceTracker;
    private IoAddressSpace _space = null!;
    private SparseDirtyBitmap _target = null!;
    private uint _ioas;

    /// <summary>Bytes mapped and unmapped: one IO page table entry of 4 KiB, 2 MiB or 1 GiB.</summary>
    [Params(4096UL, 2UL << 20, 1UL << 30)]
    public ulong Bytes { get; set; }

    /// <summary>Whether a device tracker is attached too (read after the unmap).</summary>
    [Params(false, true)]
    public bool WithDevice { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _memory = new EmulatedGuestMemory(1UL << 30);
        _iommu = new EmulatedIommu(_memory);
        _ioas = _iommu.AllocateIoas();
        _hwpt = _iommu.AllocateHwpt(_ioas, dirtyTracking: true);
        _target = new SparseDirtyBitmap(40);
        _space = new Correlator(_target).AddAddressSpace(_ioas, new EmulatedIoMapBackend(_iommu, _ioas, 1UL << 30));
        _iommuTracker = new IommuTracker(_hwpt);
        _space.Attach(_iommuTracker);
        if (WithDevice)
        {
            _device = new EmulatedDmaDevice(_hwpt);
            _deviceTracker = new DeviceTracker(_device);
            _space.Attach(_deviceTracker);
        }

        // Keep a mapping in the block (or, for 1 GiB, the next one) so that the device's ranges change as little as
        // possible per operation.
        _space.Map(Bytes < (1UL << 30) ? Iova + (1UL << 30) - 4096 : Iova + (1UL << 30), 0, 4096);
        _iommuTracker.StartTracking();
        _deviceTracker?.StartTracking();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _deviceTracker?.Dispose();
        _iommuTracker.Dispose();
        _device?.Dispose();
        _target.Dispose();
        _memory.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void BareMapAndUnmap()
    {
        _iommu.Map(_ioas, Iova, 0, Bytes, 1UL << 30);
        Write();
        _iommu.Unmap(_ioas, Iova, Bytes);
    }

    [Benchmark]
    public void MapAndSyncedUnmap()
    {
        _space.Map(Iova, 0, Bytes);
        Write();
        _space.Unmap(Iova, Bytes);
    }

    private void Write()
    {
        if (_device is not null)
        {
            _device.DmaWriteUInt64(Iova, 1);
        }
        else
        {
            _hwpt.DmaWriteUInt64(Iova, 1);
        }
    }
}
