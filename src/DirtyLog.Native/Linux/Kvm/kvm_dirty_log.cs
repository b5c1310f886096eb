// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Kvm;

/// <summary><c>struct kvm_dirty_log</c> of <c>linux/kvm.h</c>.</summary>
[UapiStruct("linux/kvm.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_dirty_log
{
    public uint slot;
    public uint padding1;
    public ulong dirty_bitmap;
}
