// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Kvm;

/// <summary><c>struct kvm_regs</c> of <c>linux/kvm.h</c>.</summary>
[UapiStruct("linux/kvm.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_regs
{
    public ulong rax;
    public ulong rbx;
    public ulong rcx;
    public ulong rdx;
    public ulong rsi;
    public ulong rdi;
    public ulong rsp;
    public ulong rbp;
    public ulong r8;
    public ulong r9;
    public ulong r10;
    public ulong r11;
    public ulong r12;
    public ulong r13;
    public ulong r14;
    public ulong r15;
    public ulong rip;
    public ulong rflags;
}
