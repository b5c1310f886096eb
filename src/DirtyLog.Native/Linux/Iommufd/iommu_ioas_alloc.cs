// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Iommufd;

/// <summary><c>struct iommu_ioas_alloc</c> of <c>linux/iommufd.h</c>.</summary>
[UapiStruct("linux/iommufd.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct iommu_ioas_alloc
{
    public uint size;
    public uint flags;
    public uint out_ioas_id;
}
