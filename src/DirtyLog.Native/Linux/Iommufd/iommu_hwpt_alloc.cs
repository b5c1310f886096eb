// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Iommufd;

/// <summary><c>struct iommu_hwpt_alloc</c> of <c>linux/iommufd.h</c>.</summary>
[UapiStruct("linux/iommufd.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct iommu_hwpt_alloc
{
    public uint size;
    public uint flags;
    public uint dev_id;
    public uint pt_id;
    public uint out_hwpt_id;
    public uint __reserved;
    public uint data_type;
    public uint data_len;
    public ulong data_uptr;
    public uint fault_id;
    public uint __reserved2;
}
