// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Kvm;

/// <summary><c>struct kvm_dirty_gfn</c> of <c>linux/kvm.h</c>.</summary>
[UapiStruct("linux/kvm.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_dirty_gfn
{
    public uint flags;
    public uint slot;
    public ulong offset;
}
