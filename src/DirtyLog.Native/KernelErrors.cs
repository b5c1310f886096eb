// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native;

/// <summary>
/// The one way a failed system call becomes a <see cref="KernelException"/>: every binding reports through here, so
/// each failure names the call, what it was asked, and the errno, the same way.
/// </summary>
internal static class KernelErrors
{
    /// <summary>The failure of the system call just made, with the errno it left (read at once: nothing may run between).</summary>
    /// <param name="call">The system call (<c>ioctl</c>, <c>mmap</c>, ...).</param>
    /// <param name="request">What it was asked: the ioctl and its object, the path, the range.</param>
    /// <returns>The exception to throw.</returns>
    public static KernelException Last(string call, string request) => From(call, request, (Errno)Marshal.GetLastPInvokeError());

    /// <summary>The failure of a system call whose errno the caller already read (to test it first).</summary>
    /// <param name="call">The system call.</param>
    /// <param name="request">What it was asked.</param>
    /// <param name="errno">The errno.</param>
    /// <returns>The exception to throw.</returns>
    public static KernelException From(string call, string request, Errno errno) => new(call, request, errno);
}
