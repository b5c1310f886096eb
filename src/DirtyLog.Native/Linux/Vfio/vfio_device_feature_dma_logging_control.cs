// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Vfio;

/// <summary><c>struct vfio_device_feature_dma_logging_control</c> of <c>linux/vfio.h</c>.</summary>
[UapiStruct("linux/vfio.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct vfio_device_feature_dma_logging_control
{
    public ulong page_size;
    public uint num_ranges;
    public uint __reserved;
    public ulong ranges;
}
