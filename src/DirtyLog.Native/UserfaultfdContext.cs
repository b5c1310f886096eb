// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using DirtyLog.Native.Linux;
using DirtyLog.Native.Linux.Userfaultfd;
using static DirtyLog.Native.Linux.Userfaultfd.UserfaultfdConstants;

namespace DirtyLog.Native;

/// <summary>
/// A userfaultfd in write-protect mode, of one of two kinds. Asynchronous (<see cref="CreateAsyncWriteProtect"/>,
/// <c>UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED</c>): the kernel resolves write faults on protected pages
/// itself and only records that the page was written, which <see cref="PagemapScanner"/> then reads; it sees writes by
/// this process's threads only. Synchronous (<see cref="CreateWriteProtect"/>): a write to a protected page waits
/// until this process unprotects it, after reading the fault (<see cref="ReadFaults"/>); writes through the kernel
/// (a vCPU's, by KVM) wait too.
/// </summary>
/// <remarks>Thread safety: registering, write-protecting, waking, interrupting and disposing may be called from any thread; each is one system call the kernel serialises on the userfaultfd. <see cref="ReadFaults"/> is for one reader thread at a time. Dispose once, after the last call.</remarks>
[SupportedOSPlatform("linux")]
public sealed unsafe partial class UserfaultfdContext : IDisposable
{
    private readonly FileDescriptorHandle? _interrupt; // an eventfd that ends a ReadFaults wait; synchronous contexts only

    private UserfaultfdContext(FileDescriptorHandle handle, ulong features, FileDescriptorHandle? interrupt)
    {
        Handle = handle;
        Features = features;
        _interrupt = interrupt;
    }

    /// <summary>The descriptor.</summary>
    public FileDescriptorHandle Handle { get; }

    /// <summary>The features the kernel reported as supported after <c>UFFDIO_API</c>.</summary>
    public ulong Features { get; }

    /// <summary>Creates the userfaultfd (user-mode faults only) and negotiates asynchronous write-protect.</summary>
    /// <returns>The userfaultfd.</returns>
    /// <exception cref="KernelException">The syscall or <c>UFFDIO_API</c> failed (EINVAL: the kernel lacks async write-protect).</exception>
    public static UserfaultfdContext CreateAsyncWriteProtect()
    {
        long fd = Interop.syscall(SyscallNumbers.__NR_userfaultfd, UFFD_USER_MODE_ONLY | Interop.O_CLOEXEC | Interop.O_NONBLOCK);
        if (fd < 0)
        {
            throw KernelErrors.Last("userfaultfd", "UFFD_USER_MODE_ONLY");
        }

        FileDescriptorHandle handle = FileDescriptorHandle.Own((int)fd, "userfaultfd");
        try
        {
            var api = new uffdio_api { api = UFFD_API, features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };
            handle.Ioctl(UFFDIO_API, nameof(UFFDIO_API), &api);
            return new UserfaultfdContext(handle, api.features, interrupt: null);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary><c>UFFDIO_REGISTER</c> in write-protect mode over a page-aligned range of this process.</summary>
    /// <param name="start">The first byte.</param>
    /// <param name="length">Bytes.</param>
    public void RegisterWriteProtect(nint start, ulong length)
    {
        var register = new uffdio_register { range = new uffdio_range { start = (ulong)start, len = length }, mode = UFFDIO_REGISTER_MODE_WP };
        Handle.Ioctl(UFFDIO_REGISTER, nameof(UFFDIO_REGISTER), &register);
    }

    /// <summary><c>UFFDIO_WRITEPROTECT</c>: protects (or unprotects) a registered range; protecting starts a clean epoch.</summary>
    /// <param name="start">The first byte.</param>
    /// <param name="length">Bytes.</param>
    /// <param name="protect">Protect or unprotect.</param>
    public void WriteProtect(nint start, ulong length, bool protect)
    {
        var wp = new uffdio_writeprotect { range = new uffdio_range { start = (ulong)start, len = length }, mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };
        Handle.Ioctl(UFFDIO_WRITEPROTECT, nameof(UFFDIO_WRITEPROTECT), &wp);
    }

    /// <summary>Whether write faults are resolved by the kernel (asynchronous) rather than waiting for this process.</summary>
    public bool IsAsynchronous => _interrupt is null;

    /// <summary>Closes the userfaultfd, which unregisters its ranges and wakes every thread still waiting on a fault.</summary>
    public void Dispose()
    {
        Handle.Dispose();
        _interrupt?.Dispose();
    }
}
