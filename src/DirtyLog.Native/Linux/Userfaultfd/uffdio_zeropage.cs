// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Userfaultfd;

/// <summary><c>struct uffdio_zeropage</c> of <c>linux/userfaultfd.h</c>.</summary>
[UapiStruct("linux/userfaultfd.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct uffdio_zeropage
{
    public uffdio_range range;
    public ulong mode;
    public long zeropage;
}
