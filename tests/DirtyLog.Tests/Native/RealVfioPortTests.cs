// Licensed under the MIT License. See LICENSE in the repository root.

using System.IO;
using System.Linq;
using DirtyLog.Native;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;
using NUnit.Framework;

namespace DirtyLog.Tests.Native;

/// <summary>
/// The real ports on real hardware: a VFIO device cdev bound to /dev/iommu. Where either is missing the tests end
/// Inconclusive and say what is missing; the emulators cover the same tracker code everywhere else.
/// </summary>
[TestFixture]
[Category("Kernel")]
[Category("Vfio")]
public class RealVfioPortTests
{
    private static string RequireDevice()
    {
        // A VFIO device first: iommufd itself is tested on a real kernel by the kernel tests (eng/kernel-tests.sh),
        // which have no device with DMA logging (only real mlx5 and pds hardware implement it).
        string[] devices = Directory.Exists("/dev/vfio/devices") ? Directory.GetFiles("/dev/vfio/devices", "vfio*") : [];
        Assume.That(devices, Is.Not.Empty, "no VFIO device cdev under /dev/vfio/devices (DMA logging needs real mlx5 or pds hardware)");
        Assume.That(File.Exists(IommufdContext.DevicePath), $"{IommufdContext.DevicePath} is missing: no iommufd on this machine");
        return devices.Order().First();
    }

    [Test]
    public void ADeviceBindsToTheIommufdAndAnswersTheDmaLoggingProbe()
    {
        string path = RequireDevice();
        using IommufdContext iommufd = IommufdContext.Open();
        using VfioDevice device = VfioDevice.Open(path);
        uint deviceId = device.BindIommufd(iommufd);
        uint ioas = iommufd.AllocateIoas();
        bool iommuDirty = iommufd.SupportsDirtyTracking(deviceId);
        bool deviceDirty = device.SupportsDmaLogging();
        TestContext.Out.WriteLine($"{path}: IOMMU dirty tracking {iommuDirty}, device DMA logging {deviceDirty}");
        Assert.That(() => new VfioDmaLoggingPort(device, ioas), Throws.Nothing);
    }

    [Test]
    public void AnIommuTrackerRunsOverARealDirtyTrackingHwpt()
    {
        string path = RequireDevice();
        using IommufdContext iommufd = IommufdContext.Open();
        using VfioDevice device = VfioDevice.Open(path);
        uint deviceId = device.BindIommufd(iommufd);
        Assume.That(iommufd.SupportsDirtyTracking(deviceId), "the IOMMU behind the device has no dirty tracking");
        uint ioas = iommufd.AllocateIoas();
        uint hwpt = iommufd.AllocateHwpt(deviceId, ioas, dirtyTracking: true);
        device.AttachPageTable(hwpt);
        using var tracker = new IommuTracker(new IommufdDirtyPort(iommufd, ioas, hwpt));
        tracker.StartTracking();
        Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Started));
        tracker.StopTracking();
    }
}
