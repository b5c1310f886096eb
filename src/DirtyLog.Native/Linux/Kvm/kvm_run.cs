// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Kvm;

/// <summary><c>struct kvm_run</c> of <c>linux/kvm.h</c> (its head only).</summary>
[UapiStruct("linux/kvm.h", Partial = true)]
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_run
{
    public byte request_interrupt_window;
    public byte immediate_exit;
    public fixed byte padding1[6];
    public uint exit_reason;
}
