// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native;

internal static partial class Interop
{
    /// <summary>
    /// <c>int ioctl(int fd, unsigned long request, ...)</c> with one pointer argument. The request is unsigned
    /// and pointer-sized, so a value such as 0xC0606610 is never sign-extended; the kernel truncates it to 32 bits.
    /// </summary>
    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    internal static unsafe partial int ioctl(int fd, nuint request, void* arg);
}
