// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Iommufd;

/// <summary><c>struct iommu_hw_info</c> of <c>linux/iommufd.h</c>.</summary>
[UapiStruct("linux/iommufd.h")]
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct iommu_hw_info
{
    public uint size;
    public uint flags;
    public uint dev_id;
    public uint data_len;
    public ulong data_uptr;
    public uint out_data_type;
    public byte out_max_pasid_log2;
    public fixed byte __reserved[3];
    public ulong out_capabilities;
}
