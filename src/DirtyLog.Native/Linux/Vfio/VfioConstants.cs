// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native.Linux.Vfio;

/// <summary>VFIO ioctl numbers, feature numbers and flags, named as in <c>include/uapi/linux/vfio.h</c>.</summary>
[UapiConstants("linux/vfio.h")]
internal static class VfioConstants
{
    public const uint VFIO_TYPE = ';';
    public const uint VFIO_BASE = 100;

    // VFIO_DEVICE_FEATURE shares its number with the container's VFIO_IOMMU_DIRTY_PAGES: the fd decides.
    public const uint VFIO_DEVICE_FEATURE = (VFIO_TYPE << 8) | (VFIO_BASE + 17);
    public const uint VFIO_DEVICE_BIND_IOMMUFD = (VFIO_TYPE << 8) | (VFIO_BASE + 18);
    public const uint VFIO_DEVICE_ATTACH_IOMMUFD_PT = (VFIO_TYPE << 8) | (VFIO_BASE + 19);
    public const uint VFIO_DEVICE_DETACH_IOMMUFD_PT = (VFIO_TYPE << 8) | (VFIO_BASE + 20);

    public const uint VFIO_DEVICE_FEATURE_MASK = 0xffff;
    public const uint VFIO_DEVICE_FEATURE_GET = 1 << 16;
    public const uint VFIO_DEVICE_FEATURE_SET = 1 << 17;
    public const uint VFIO_DEVICE_FEATURE_PROBE = 1 << 18;

    public const uint VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6;
    public const uint VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7;
    public const uint VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8;
}
