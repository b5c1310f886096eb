// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Testing;
using NUnit.Framework;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>A fresh emulated guest, IOMMU, IO address space and dirty-tracking HWPT for every test.</summary>
public abstract class EmulatedIommuFixture
{
    protected const ulong KiB = 1024, MiB = 1024 * KiB;

    protected EmulatedGuestMemory Memory { get; private set; } = null!;

    protected EmulatedIommu Iommu { get; private set; } = null!;

    protected uint Ioas { get; private set; }

    protected EmulatedHwpt Hwpt { get; private set; } = null!;

    /// <summary>Bytes of guest memory each test gets.</summary>
    protected virtual ulong GuestBytes => 64 * MiB;

    [SetUp]
    public void CreateEmulatedIommu()
    {
        Memory = new EmulatedGuestMemory(GuestBytes);
        Iommu = new EmulatedIommu(Memory);
        Ioas = Iommu.AllocateIoas();
        Hwpt = Iommu.AllocateHwpt(Ioas, dirtyTracking: true);
    }

    [TearDown]
    public void DisposeEmulatedIommu() => Memory.Dispose();
}
