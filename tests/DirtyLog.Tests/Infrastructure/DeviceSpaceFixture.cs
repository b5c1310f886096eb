// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Bitmaps;
using DirtyLog.Mapping;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>
/// On top of <see cref="EmulatedIommuFixture"/>: a second IOAS whose emulated device logs its own DMA, its tracker,
/// and the correlator address space it is attached to, translating into a 1 TiB shared bitmap.
/// </summary>
public abstract class DeviceSpaceFixture : EmulatedIommuFixture
{
    protected SparseDirtyBitmap Target { get; private set; } = null!;

    protected EmulatedDmaDevice Device { get; private set; } = null!;

    protected DeviceTracker Tracker { get; private set; } = null!;

    protected IoAddressSpace Space { get; private set; } = null!;

    [SetUp]
    public void CreateDeviceSpace()
    {
        Target = new SparseDirtyBitmap(40); // 1 TiB: far larger than the guest RAM the backend knows
        uint ioas = Iommu.AllocateIoas();
        Device = new EmulatedDmaDevice(Iommu.AllocateHwpt(ioas, dirtyTracking: false), DeviceDirtyLogLimits.Mlx5);
        Tracker = new DeviceTracker(Device);
        Space = new Correlator(Target).AddAddressSpace(ioas, new EmulatedIoMapBackend(Iommu, ioas, 4096));
        Space.Attach(Tracker);
    }

    [TearDown]
    public void DisposeDeviceSpace()
    {
        Tracker.Dispose();
        Device.Dispose();
        Target.Dispose();
    }
}
