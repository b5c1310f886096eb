// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Userfaultfd;

/// <summary><c>struct pm_scan_arg</c> of <c>linux/fs.h</c>.</summary>
[UapiStruct("linux/fs.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct pm_scan_arg
{
    public ulong size;
    public ulong flags;
    public ulong start;
    public ulong end;
    public ulong walk_end;
    public ulong vec;
    public ulong vec_len;
    public ulong max_pages;
    public ulong category_inverted;
    public ulong category_mask;
    public ulong category_anyof_mask;
    public ulong return_mask;
}
