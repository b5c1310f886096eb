// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Iommufd;

/// <summary><c>struct iommu_hwpt_get_dirty_bitmap</c> of <c>linux/iommufd.h</c>.</summary>
[UapiStruct("linux/iommufd.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct iommu_hwpt_get_dirty_bitmap
{
    public uint size;
    public uint hwpt_id;
    public uint flags;
    public uint __reserved;
    public ulong iova;
    public ulong length;
    public ulong page_size;
    public ulong data;
}
