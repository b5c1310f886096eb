// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Vfio;

/// <summary><c>struct vfio_device_feature_dma_logging_report</c> of <c>linux/vfio.h</c>.</summary>
[UapiStruct("linux/vfio.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct vfio_device_feature_dma_logging_report
{
    public ulong iova;
    public ulong length;
    public ulong page_size;
    public ulong bitmap;
}
