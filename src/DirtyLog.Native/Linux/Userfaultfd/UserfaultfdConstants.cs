// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native.Linux.Userfaultfd;

/// <summary>userfaultfd ioctl numbers, features and modes, named as in <c>include/uapi/linux/userfaultfd.h</c>.</summary>
[UapiConstants("linux/userfaultfd.h")]
internal static class UserfaultfdConstants
{
    public const ulong UFFD_API = 0xAA;
    public const uint UFFD_USER_MODE_ONLY = 1;

    public const uint UFFDIO_API = (3u << 30) | (24u << 16) | (0xAAu << 8) | 0x3F;
    public const uint UFFDIO_REGISTER = (3u << 30) | (32u << 16) | (0xAAu << 8) | 0x00;
    public const uint UFFDIO_WRITEPROTECT = (3u << 30) | (24u << 16) | (0xAAu << 8) | 0x06;
    public const uint UFFDIO_WAKE = (2u << 30) | (16u << 16) | (0xAAu << 8) | 0x02;
    public const uint UFFDIO_COPY = (3u << 30) | (40u << 16) | (0xAAu << 8) | 0x03;
    public const uint UFFDIO_ZEROPAGE = (3u << 30) | (32u << 16) | (0xAAu << 8) | 0x04;

    public const byte UFFD_EVENT_PAGEFAULT = 0x12;
    public const ulong UFFD_PAGEFAULT_FLAG_WRITE = 1UL << 0;
    public const ulong UFFD_PAGEFAULT_FLAG_WP = 1UL << 1;

    public const ulong UFFD_FEATURE_THREAD_ID = 1UL << 8;
    public const ulong UFFD_FEATURE_WP_UNPOPULATED = 1UL << 13;
    public const ulong UFFD_FEATURE_WP_ASYNC = 1UL << 15;

    public const ulong UFFDIO_REGISTER_MODE_MISSING = 1UL << 0;
    public const ulong UFFDIO_REGISTER_MODE_WP = 1UL << 1;
    public const ulong UFFDIO_WRITEPROTECT_MODE_WP = 1UL << 0;
}
