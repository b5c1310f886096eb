// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native;

internal static partial class Interop
{
    /// <summary>
    /// <c>int ioctl(int fd, unsigned long request, ...)</c> with one pointer argument. The request is unsigned
    /// and pointer-sized, so a value such as 0xC0606610 is never sign-extended; the kernel truncates it to 32 bits.
    /// The marshaller holds a reference on <paramref name="fd"/> for the call, so a concurrent dispose cannot close
    /// (and the process cannot reuse) the descriptor while the kernel works on it.
    /// </summary>
    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    internal static unsafe partial int ioctl(SafeHandle fd, nuint request, void* arg);
}
