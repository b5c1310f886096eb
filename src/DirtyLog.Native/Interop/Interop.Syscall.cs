// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native;

internal static partial class Interop
{
    internal const int O_RDONLY = 0;
    internal const int O_NONBLOCK = 0x800;

    /// <summary><c>long syscall(long number, long arg)</c>, for system calls glibc does not wrap (userfaultfd).</summary>
    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long syscall(long number, long arg);

    /// <summary><c>long syscall(long number, ...)</c> with four arguments (rt_sigprocmask, rt_sigtimedwait, tgkill).</summary>
    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long syscall(long number, long arg1, long arg2, long arg3, long arg4);

    /// <summary><c>long syscall(long number, ...)</c> with six arguments (process_vm_readv).</summary>
    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long syscall6(long number, long arg1, long arg2, long arg3, long arg4, long arg5, long arg6);

    /// <summary>
    /// <c>long syscall(long number, ...)</c> whose first argument is a descriptor (pidfd_send_signal), referenced by the
    /// marshaller for the call so that it cannot be closed and reused under the kernel.
    /// </summary>
    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    internal static partial long syscall(long number, SafeHandle fd, long arg2, long arg3, long arg4);
}
