// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native;

internal static partial class Interop
{
    internal const int O_RDWR = 2;
    internal const int O_CLOEXEC = 0x80000;

    /// <summary><c>int open(const char *path, int flags)</c>; <paramref name="path"/> is NUL-terminated UTF-8.</summary>
    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true)]
    internal static unsafe partial int open(byte* path, int flags);

    /// <summary><c>int close(int fd)</c>. Only <see cref="FileDescriptorHandle.ReleaseHandle"/> calls it.</summary>
    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    internal static partial int close(int fd);
}
