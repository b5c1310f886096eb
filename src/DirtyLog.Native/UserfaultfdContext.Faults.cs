// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.InteropServices;
using DirtyLog.Native.Linux;
using DirtyLog.Native.Linux.Userfaultfd;
using static DirtyLog.Native.Linux.Userfaultfd.UserfaultfdConstants;

namespace DirtyLog.Native;

/// <summary>The synchronous facet: creating a context whose faults wait for this process, reading them, waking waiters.</summary>
public sealed unsafe partial class UserfaultfdContext
{
    /// <summary>
    /// Creates a synchronous write-protect userfaultfd: a write to a page protected by <see cref="WriteProtect"/>
    /// waits, whether it comes from a thread of this process or from the kernel on its behalf (KVM writing for a vCPU),
    /// until this process unprotects the page. With <c>UFFD_FEATURE_WP_UNPOPULATED</c> when the kernel has it, so pages
    /// never touched are protected too.
    /// </summary>
    /// <returns>The userfaultfd.</returns>
    /// <exception cref="KernelException">
    /// The syscall failed: EPERM when the process may not catch faults taken in the kernel (that needs
    /// <c>CAP_SYS_PTRACE</c> or <c>vm.unprivileged_userfaultfd = 1</c>); or <c>UFFDIO_API</c> failed.
    /// </exception>
    public static UserfaultfdContext CreateWriteProtect() => CreateSynchronous(UFFD_FEATURE_WP_UNPOPULATED);

    /// <summary>
    /// A synchronous userfaultfd that reports faults to this process, whether a thread of it or the kernel on its
    /// behalf (KVM for a vCPU) takes them, with <paramref name="features"/> when the kernel has them (none otherwise).
    /// </summary>
    private static UserfaultfdContext CreateSynchronous(ulong features)
    {
        // Not UFFD_USER_MODE_ONLY: KVM's writes for a vCPU fault in the kernel, and a user-mode-only context would fail them (EFAULT from KVM_RUN).
        long fd = Interop.syscall(SyscallNumbers.__NR_userfaultfd, Interop.O_CLOEXEC | Interop.O_NONBLOCK);
        if (fd < 0)
        {
            throw KernelErrors.Last("userfaultfd", "O_CLOEXEC | O_NONBLOCK (faults in the kernel too)");
        }

        FileDescriptorHandle handle = FileDescriptorHandle.Own((int)fd, "userfaultfd");
        FileDescriptorHandle? interrupt = null;
        try
        {
            var api = new uffdio_api { api = UFFD_API, features = features };
            if (handle.TryIoctl(UFFDIO_API, &api, out Errno errno) < 0)
            {
                if (errno != Errno.EINVAL)
                {
                    throw KernelErrors.From("ioctl", "UFFDIO_API on userfaultfd", errno);
                }

                // An older kernel without those features: a second UFFDIO_API on the same descriptor is refused, so start again.
                handle.Dispose();
                fd = Interop.syscall(SyscallNumbers.__NR_userfaultfd, Interop.O_CLOEXEC | Interop.O_NONBLOCK);
                if (fd < 0)
                {
                    throw KernelErrors.Last("userfaultfd", "O_CLOEXEC | O_NONBLOCK (faults in the kernel too)");
                }

                handle = FileDescriptorHandle.Own((int)fd, "userfaultfd");
                api = new uffdio_api { api = UFFD_API };
                handle.Ioctl(UFFDIO_API, nameof(UFFDIO_API), &api);
            }

            int efd = Interop.eventfd(0, Interop.EFD_CLOEXEC | Interop.EFD_NONBLOCK);
            if (efd < 0)
            {
                throw KernelErrors.Last("eventfd", "EFD_CLOEXEC | EFD_NONBLOCK");
            }

            interrupt = FileDescriptorHandle.Own(efd, "eventfd (userfaultfd interrupt)");
            return new UserfaultfdContext(handle, api.features, interrupt);
        }
        catch
        {
            handle.Dispose();
            interrupt?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Waits up to <paramref name="timeoutMilliseconds"/> for write faults on protected pages and reads as many as fit.
    /// The faulting threads keep waiting until their page is unprotected (<see cref="WriteProtect"/> with
    /// <see langword="false"/>) or woken (<see cref="Wake"/>).
    /// </summary>
    /// <param name="faults">Where the faults go.</param>
    /// <param name="timeoutMilliseconds">How long to wait when none is pending; -1 waits until a fault or <see cref="Interrupt"/>.</param>
    /// <returns>Faults read; 0 after the timeout or an <see cref="Interrupt"/>.</returns>
    /// <exception cref="InvalidOperationException">The context is asynchronous: its faults are never reported.</exception>
    /// <exception cref="KernelException">poll or read failed.</exception>
    public int ReadFaults(Span<UserfaultfdFault> faults, int timeoutMilliseconds)
    {
        FileDescriptorHandle interrupt = _interrupt ?? throw new InvalidOperationException("An asynchronous write-protect context reports no faults: create it with CreateWriteProtect.");
        if (faults.IsEmpty)
        {
            return 0;
        }

        bool addedFault = false, addedInterrupt = false;
        Handle.DangerousAddRef(ref addedFault); // the descriptors must stay open (and not be reused) while poll looks at them
        interrupt.DangerousAddRef(ref addedInterrupt);
        try
        {
            Interop.PollFd* fds = stackalloc Interop.PollFd[2];
            fds[0] = new Interop.PollFd { fd = Handle.Descriptor, events = Interop.POLLIN };
            fds[1] = new Interop.PollFd { fd = interrupt.Descriptor, events = Interop.POLLIN };
            int ready;
            while ((ready = Interop.poll(fds, 2, timeoutMilliseconds)) < 0)
            {
                var errno = (Errno)Marshal.GetLastPInvokeError();
                if (errno != Errno.EINTR)
                {
                    throw KernelErrors.From("poll", "userfaultfd", errno);
                }
            }

            if (ready == 0)
            {
                return 0;
            }

            if (fds[1].revents != 0)
            {
                ulong count;
                _ = Interop.read(interrupt, &count, sizeof(ulong)); // consume the interrupt; EAGAIN means another reader took it
                return 0;
            }

            return ReadPending(faults);
        }
        finally
        {
            interrupt.DangerousRelease();
            Handle.DangerousRelease();
        }
    }

    /// <summary>Ends the current (or the next) <see cref="ReadFaults"/> wait early: it returns 0.</summary>
    /// <exception cref="InvalidOperationException">The context is asynchronous.</exception>
    /// <exception cref="KernelException">The eventfd write failed.</exception>
    public void Interrupt()
    {
        FileDescriptorHandle interrupt = _interrupt ?? throw new InvalidOperationException("An asynchronous write-protect context has no fault reader to interrupt.");
        ulong one = 1;
        if (Interop.write(interrupt, &one, sizeof(ulong)) < 0 && (Errno)Marshal.GetLastPInvokeError() != Errno.EAGAIN)
        {
            throw KernelErrors.Last("write", "eventfd (userfaultfd interrupt)");
        }
    }

    /// <summary><c>UFFDIO_WAKE</c>: wakes threads waiting on faults in a range without changing its protection.</summary>
    /// <param name="start">The first byte, page-aligned.</param>
    /// <param name="length">Bytes, a multiple of the page size.</param>
    /// <exception cref="KernelException">The ioctl failed (EINVAL for a range outside the registered ones).</exception>
    public void Wake(nint start, ulong length)
    {
        var range = new uffdio_range { start = (ulong)start, len = length };
        Handle.Ioctl(UFFDIO_WAKE, nameof(UFFDIO_WAKE), &range);
    }

    private int ReadPending(Span<UserfaultfdFault> faults)
    {
        const int Batch = 16;
        uffd_msg* messages = stackalloc uffd_msg[Batch];
        int want = Math.Min(faults.Length, Batch);
        nint bytes = Interop.read(Handle, messages, (nuint)(want * sizeof(uffd_msg)));
        if (bytes < 0)
        {
            var errno = (Errno)Marshal.GetLastPInvokeError();
            if (errno is Errno.EAGAIN or Errno.EINTR)
            {
                return 0; // another reader took them, or a signal came first: the caller asks again
            }

            throw KernelErrors.From("read", "userfaultfd", errno);
        }

        int read = (int)(bytes / sizeof(uffd_msg));
        int count = 0;
        for (int i = 0; i < read; i++)
        {
            if (messages[i].@event == UFFD_EVENT_PAGEFAULT)
            {
                ulong flags = messages[i].arg.flags;
                faults[count++] = new UserfaultfdFault(messages[i].arg.address, (flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0,
                    (flags & UFFD_PAGEFAULT_FLAG_WP) != 0, messages[i].arg.ptid);
            }
        }

        return count;
    }
}
