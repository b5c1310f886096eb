// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native;

/// <summary>The Linux errno values DirtyLog's kernel interfaces return, by their kernel names (x86-64 and the asm-generic values).</summary>
/// <remarks>A value the kernel returns that is not named here is still carried as is: <c>(Errno)n</c>.</remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1707", Justification = "The names are the kernel's.")]
public enum Errno
{
#pragma warning disable CS1591 // The names are the documentation: they are the kernel's.
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
    ENXIO = 6,
    E2BIG = 7,
    EBADF = 9,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    ENODEV = 19,
    EINVAL = 22,
    ENOTTY = 25,
    ENOSPC = 28,
    ERANGE = 34,
    ENOSYS = 38,
    EOVERFLOW = 75,
    EMSGSIZE = 90,
    EOPNOTSUPP = 95,
    ENOTCONN = 107,
#pragma warning restore CS1591
}
