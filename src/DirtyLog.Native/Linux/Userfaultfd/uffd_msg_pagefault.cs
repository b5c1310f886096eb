// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Userfaultfd;

/// <summary>
/// <c>uffd_msg.arg.pagefault</c> of <c>linux/userfaultfd.h</c> (an anonymous struct in a union, so checked through
/// <see cref="uffd_msg"/>'s <c>arg</c>, whose size is the union's): flags, the faulting address, the thread's id.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct uffd_msg_pagefault
{
    public ulong flags;
    public ulong address;
    public uint ptid;
    public uint pad;
}
