// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Vfio;

/// <summary><c>struct vfio_device_bind_iommufd</c> of <c>linux/vfio.h</c>.</summary>
[UapiStruct("linux/vfio.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct vfio_device_bind_iommufd
{
    public uint argsz;
    public uint flags;
    public int iommufd;
    public uint out_devid;
}
