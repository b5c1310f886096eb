// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Userfaultfd;

/// <summary>
/// <c>struct uffd_msg</c> of <c>linux/userfaultfd.h</c>, read from a synchronous userfaultfd. Its <c>arg</c> is a
/// union; only the page-fault member is mirrored (<see cref="uffd_msg_pagefault"/>, the union's 24 bytes).
/// </summary>
[UapiStruct("linux/userfaultfd.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct uffd_msg
{
    public byte @event;
    public byte reserved1;
    public ushort reserved2;
    public uint reserved3;
    public uffd_msg_pagefault arg;
}
