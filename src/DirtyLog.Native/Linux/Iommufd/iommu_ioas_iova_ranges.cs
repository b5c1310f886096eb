// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Iommufd;

/// <summary><c>struct iommu_ioas_iova_ranges</c> of <c>linux/iommufd.h</c>.</summary>
[UapiStruct("linux/iommufd.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct iommu_ioas_iova_ranges
{
    public uint size;
    public uint ioas_id;
    public uint num_iovas;
    public uint __reserved;
    public ulong allowed_iovas;
    public ulong out_iova_alignment;
}
