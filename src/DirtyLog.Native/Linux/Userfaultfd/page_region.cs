// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native.Linux.Userfaultfd;

/// <summary><c>struct page_region</c> of <c>linux/fs.h</c>.</summary>
[UapiStruct("linux/fs.h")]
[StructLayout(LayoutKind.Sequential)]
internal struct page_region
{
    public ulong start;
    public ulong end;
    public ulong categories;
}
