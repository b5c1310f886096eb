// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Kvm;

/// <summary><c>struct kvm_userspace_memory_region</c> of <c>linux/kvm.h</c>.</summary>
[UapiStruct("linux/kvm.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_userspace_memory_region
{
    public uint slot;
    public uint flags;
    public ulong guest_phys_addr;
    public ulong memory_size;
    public ulong userspace_addr;
}
