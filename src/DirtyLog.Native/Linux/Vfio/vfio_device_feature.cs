// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Vfio;

/// <summary><c>struct vfio_device_feature</c> of <c>linux/vfio.h</c>.</summary>
[UapiStruct("linux/vfio.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct vfio_device_feature
{
    public uint argsz;
    public uint flags;
}
