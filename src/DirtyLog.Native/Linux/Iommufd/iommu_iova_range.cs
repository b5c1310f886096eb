// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Iommufd;

/// <summary><c>struct iommu_iova_range</c> of <c>linux/iommufd.h</c>.</summary>
[UapiStruct("linux/iommufd.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct iommu_iova_range
{
    public ulong start;
    public ulong last;
}
