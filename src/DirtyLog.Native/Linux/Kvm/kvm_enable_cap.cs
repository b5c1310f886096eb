// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Kvm;

/// <summary><c>struct kvm_enable_cap</c> of <c>linux/kvm.h</c>.</summary>
[UapiStruct("linux/kvm.h")]
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_enable_cap
{
    public uint cap;
    public uint flags;
    public fixed ulong args[4];
    public fixed byte pad[64];
}
