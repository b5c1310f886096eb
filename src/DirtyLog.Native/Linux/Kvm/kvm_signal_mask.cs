// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Kvm;

/// <summary><c>struct kvm_signal_mask</c> of <c>linux/kvm.h</c>: a length followed by that many bytes of kernel sigset.</summary>
[UapiStruct("linux/kvm.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_signal_mask
{
    public uint len;
}
