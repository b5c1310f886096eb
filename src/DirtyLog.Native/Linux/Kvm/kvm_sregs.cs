// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Kvm;

/// <summary><c>struct kvm_sregs</c> of <c>linux/kvm.h</c>.</summary>
[UapiStruct("linux/kvm.h")]
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct kvm_sregs
{
    public kvm_segment cs;
    public kvm_segment ds;
    public kvm_segment es;
    public kvm_segment fs;
    public kvm_segment gs;
    public kvm_segment ss;
    public kvm_segment tr;
    public kvm_segment ldt;
    public kvm_dtable gdt;
    public kvm_dtable idt;
    public ulong cr0;
    public ulong cr2;
    public ulong cr3;
    public ulong cr4;
    public ulong cr8;
    public ulong efer;
    public ulong apic_base;
    public fixed ulong interrupt_bitmap[4];
}
