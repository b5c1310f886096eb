// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Userfaultfd;

/// <summary><c>struct uffdio_api</c> of <c>linux/userfaultfd.h</c>.</summary>
[UapiStruct("linux/userfaultfd.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct uffdio_api
{
    public ulong api;
    public ulong features;
    public ulong ioctls;
}
