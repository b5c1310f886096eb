// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native.Linux.Iommufd;

/// <summary>iommufd ioctl numbers and flags, named as in <c>include/uapi/linux/iommufd.h</c>.</summary>
[UapiConstants("linux/iommufd.h")]
internal static class IommufdConstants
{
    public const uint IOMMUFD_TYPE = ';';

    public const uint IOMMU_DESTROY = (IOMMUFD_TYPE << 8) | 0x80;
    public const uint IOMMU_IOAS_ALLOC = (IOMMUFD_TYPE << 8) | 0x81;
    public const uint IOMMU_IOAS_IOVA_RANGES = (IOMMUFD_TYPE << 8) | 0x84;
    public const uint IOMMU_IOAS_MAP = (IOMMUFD_TYPE << 8) | 0x85;
    public const uint IOMMU_IOAS_UNMAP = (IOMMUFD_TYPE << 8) | 0x86;
    public const uint IOMMU_HWPT_ALLOC = (IOMMUFD_TYPE << 8) | 0x89;
    public const uint IOMMU_GET_HW_INFO = (IOMMUFD_TYPE << 8) | 0x8a;
    public const uint IOMMU_HWPT_SET_DIRTY_TRACKING = (IOMMUFD_TYPE << 8) | 0x8b;
    public const uint IOMMU_HWPT_GET_DIRTY_BITMAP = (IOMMUFD_TYPE << 8) | 0x8c;

    public const uint IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
    public const uint IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
    public const uint IOMMU_IOAS_MAP_READABLE = 1 << 2;

    public const uint IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
    public const uint IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;

    public const ulong IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0;

    public const uint IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;
    public const uint IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;
}
