// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Iommufd;

/// <summary><c>struct iommu_ioas_map</c> of <c>linux/iommufd.h</c>.</summary>
[UapiStruct("linux/iommufd.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct iommu_ioas_map
{
    public uint size;
    public uint flags;
    public uint ioas_id;
    public uint __reserved;
    public ulong user_va;
    public ulong length;
    public ulong iova;
}
