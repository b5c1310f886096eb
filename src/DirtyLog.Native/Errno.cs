// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native;

/// <summary>The Linux errno values DirtyLog's kernel interfaces return, by their kernel names.</summary>
public static class Errno
{
#pragma warning disable CS1591 // The names are the documentation: they are the kernel's.
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int ENXIO = 6;
    public const int E2BIG = 7;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EFAULT = 14;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int ENODEV = 19;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;
    public const int ENOTTY = 25;
    public const int ERANGE = 34;
    public const int ENOSYS = 38;
    public const int EOVERFLOW = 75;
    public const int EMSGSIZE = 90;
    public const int EOPNOTSUPP = 95;
    public const int ENOTCONN = 107;
#pragma warning restore CS1591

    /// <summary>The symbolic name of <paramref name="errno"/>, or <c>errno N</c> for one not listed here.</summary>
    /// <param name="errno">The value.</param>
    /// <returns>The name.</returns>
    public static string NameOf(int errno) => errno switch
    {
        EPERM => nameof(EPERM),
        ENOENT => nameof(ENOENT),
        EINTR => nameof(EINTR),
        EIO => nameof(EIO),
        E2BIG => nameof(E2BIG),
        EBADF => nameof(EBADF),
        EAGAIN => nameof(EAGAIN),
        ENOMEM => nameof(ENOMEM),
        EACCES => nameof(EACCES),
        EFAULT => nameof(EFAULT),
        EBUSY => nameof(EBUSY),
        EEXIST => nameof(EEXIST),
        ENODEV => nameof(ENODEV),
        EINVAL => nameof(EINVAL),
        ENOSPC => nameof(ENOSPC),
        ENOTTY => nameof(ENOTTY),
        ERANGE => nameof(ERANGE),
        ENOSYS => nameof(ENOSYS),
        EOVERFLOW => nameof(EOVERFLOW),
        EMSGSIZE => nameof(EMSGSIZE),
        EOPNOTSUPP => nameof(EOPNOTSUPP),
        ENOTCONN => nameof(ENOTCONN),
        _ => $"errno {errno}",
    };
}
