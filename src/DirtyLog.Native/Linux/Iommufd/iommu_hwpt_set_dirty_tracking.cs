// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Iommufd;

/// <summary><c>struct iommu_hwpt_set_dirty_tracking</c> of <c>linux/iommufd.h</c>.</summary>
[UapiStruct("linux/iommufd.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct iommu_hwpt_set_dirty_tracking
{
    public uint size;
    public uint flags;
    public uint hwpt_id;
    public uint __reserved;
}
