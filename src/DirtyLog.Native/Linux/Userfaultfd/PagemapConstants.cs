// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native.Linux.Userfaultfd;

/// <summary>PAGEMAP_SCAN's ioctl number, flags and page categories, named as in <c>include/uapi/linux/fs.h</c>.</summary>
[UapiConstants("linux/fs.h")]
internal static class PagemapConstants
{
    public const uint PAGEMAP_SCAN = (3u << 30) | (96u << 16) | ((uint)'f' << 8) | 16;
    public const ulong PM_SCAN_WP_MATCHING = 1UL << 0;
    public const ulong PM_SCAN_CHECK_WPASYNC = 1UL << 1;
    public const ulong PAGE_IS_WRITTEN = 1UL << 1;
}
