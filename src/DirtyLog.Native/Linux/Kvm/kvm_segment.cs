// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Kvm;

/// <summary><c>struct kvm_segment</c> of <c>linux/kvm.h</c>.</summary>
[UapiStruct("linux/kvm.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct kvm_segment
{
    public ulong @base;
    public uint limit;
    public ushort selector;
    public byte type;
    public byte present;
    public byte dpl;
    public byte db;
    public byte s;
    public byte l;
    public byte g;
    public byte avl;
    public byte unusable;
    public byte padding;
}
