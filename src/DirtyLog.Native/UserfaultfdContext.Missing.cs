// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Native.Linux;
using DirtyLog.Native.Linux.Userfaultfd;
using static DirtyLog.Native.Linux.Userfaultfd.UserfaultfdConstants;

namespace DirtyLog.Native;

/// <summary>
/// The missing-page facet (post-copy's): a fault on a registered page that has no memory waits until this process
/// installs the page's bytes (<see cref="Copy"/>) or a zero page (<see cref="InstallZeroPages"/>).
/// </summary>
public sealed unsafe partial class UserfaultfdContext
{
    /// <summary>
    /// Creates a synchronous missing-page userfaultfd: a read or write of a registered page that has no memory yet
    /// (never touched, or given back with <c>MADV_DONTNEED</c>) waits, whether a thread of this process or the kernel
    /// on its behalf (KVM for a vCPU) takes it, until this process installs the page. With
    /// <c>UFFD_FEATURE_THREAD_ID</c> when the kernel has it: each fault names its thread.
    /// </summary>
    /// <returns>The userfaultfd; read its faults with <see cref="ReadFaults"/>.</returns>
    /// <exception cref="KernelException">
    /// The syscall failed: EPERM when the process may not catch faults taken in the kernel (that needs
    /// <c>CAP_SYS_PTRACE</c> or <c>vm.unprivileged_userfaultfd = 1</c>); or <c>UFFDIO_API</c> failed.
    /// </exception>
    public static UserfaultfdContext CreateMissing() => CreateSynchronous(UFFD_FEATURE_THREAD_ID);

    /// <summary><c>UFFDIO_REGISTER</c> in missing mode over a page-aligned range of this process (anonymous or shared memory).</summary>
    /// <param name="start">The first byte, page-aligned.</param>
    /// <param name="length">Bytes, a multiple of the page size.</param>
    /// <exception cref="KernelException">The ioctl failed (EINVAL for a range not aligned or not mapped; EBUSY if registered by another context).</exception>
    public void RegisterMissing(nint start, ulong length)
    {
        var register = new uffdio_register { range = new uffdio_range { start = (ulong)start, len = length }, mode = UFFDIO_REGISTER_MODE_MISSING };
        Handle.Ioctl(UFFDIO_REGISTER, nameof(UFFDIO_REGISTER), &register);
    }

    /// <summary>
    /// <c>UFFDIO_COPY</c>: installs <paramref name="pages"/> at <paramref name="destination"/> (registered, missing) and
    /// wakes the threads waiting there. A page that has memory already (installed by another copy, a zero page, or
    /// written before it was registered) is left as it is and skipped: <c>EEXIST</c> is not an error here, as a page
    /// requested and pushed at once arrives twice.
    /// </summary>
    /// <param name="destination">The first byte, page-aligned.</param>
    /// <param name="pages">Whole pages of bytes.</param>
    /// <returns>Bytes installed; the rest of the range had memory already.</returns>
    /// <exception cref="ArgumentException">The bytes are not whole pages.</exception>
    /// <exception cref="KernelException">The ioctl failed otherwise (EINVAL for a range not registered, ENOENT after the mapping changed).</exception>
    public ulong Copy(nint destination, ReadOnlySpan<byte> pages)
    {
        ulong pageSize = (ulong)Environment.SystemPageSize;
        if ((ulong)pages.Length % pageSize != 0)
        {
            throw new ArgumentException($"{pages.Length} bytes are not whole {pageSize}-byte pages.", nameof(pages));
        }

        fixed (byte* source = pages)
        {
            return InstallEach(destination, (ulong)pages.Length, pageSize, (ulong)source);
        }
    }

    /// <summary>
    /// <c>UFFDIO_ZEROPAGE</c>: maps zero pages at <paramref name="destination"/> (registered, missing) and wakes the
    /// threads waiting there; pages that have memory already are skipped, as for <see cref="Copy"/>.
    /// </summary>
    /// <param name="destination">The first byte, page-aligned.</param>
    /// <param name="length">Bytes, a multiple of the page size.</param>
    /// <returns>Bytes installed.</returns>
    /// <exception cref="KernelException">The ioctl failed otherwise.</exception>
    public ulong InstallZeroPages(nint destination, ulong length)
    {
        ulong pageSize = (ulong)Environment.SystemPageSize;
        return InstallEach(destination, length, pageSize, source: 0);
    }

    /// <summary>
    /// Gives a range of anonymous private memory back to the kernel (<c>madvise</c> <c>MADV_DONTNEED</c>): a range
    /// registered in missing mode faults again on its next touch, as post-copy needs of a page whose copy here is
    /// stale. Shared memory (a memfd) keeps its contents under <c>MADV_DONTNEED</c>: it needs a hole punched instead.
    /// </summary>
    /// <param name="start">The first byte, page-aligned.</param>
    /// <param name="length">Bytes, a multiple of the page size.</param>
    /// <exception cref="KernelException">madvise failed (EINVAL for a range not aligned).</exception>
    public static void DropPages(nint start, ulong length)
    {
        if (length != 0 && Interop.madvise((void*)start, (nuint)length, Interop.MADV_DONTNEED) != 0)
        {
            throw KernelErrors.Last("madvise", $"MADV_DONTNEED of {length} bytes at 0x{(ulong)start:x}");
        }
    }

    /// <summary>
    /// Empties a range of anonymous private memory in one step, as <see cref="DropPages"/> does, but without freeing its
    /// pages there and then: <c>mremap</c> with <c>MREMAP_DONTUNMAP</c> moves them, page tables and all, to a new
    /// mapping the kernel picks, and leaves the range mapped, empty and registered as it was, so that its next touch
    /// faults (missing). Moving whole page tables costs microseconds where freeing 256 MiB costs about 10 ms: post-copy
    /// drops its discarded pages inside the downtime, and frees them after the guest resumed.
    /// </summary>
    /// <param name="start">The first byte, page-aligned.</param>
    /// <param name="length">Bytes, a multiple of the page size, inside one mapping.</param>
    /// <returns>The pages, for the caller to free when it can; <see langword="null"/> when the kernel cannot move them
    /// (before Linux 5.7, or a range that spans mappings): drop them with <see cref="DropPages"/> then.</returns>
    public static DetachedPages? DetachPages(nint start, ulong length)
    {
        if (length == 0)
        {
            return null;
        }

        long moved = Interop.syscall6(SyscallNumbers.__NR_mremap, start, (long)length, (long)length,
            MremapConstants.MREMAP_MAYMOVE | MremapConstants.MREMAP_DONTUNMAP, 0, 0);
        return moved == -1 ? null : new DetachedPages(Internal.MemoryMappingHandle.Adopt((void*)moved, (nuint)length));
    }

    /// <summary>
    /// Runs an installing ioctl over the range until done: after <c>EEXIST</c> the bytes it did install count, the page
    /// that had memory is stepped over, and the rest goes again; after <c>EAGAIN</c> (the mapping changed under it) the
    /// rest goes again.
    /// </summary>
    /// <param name="destination">The first byte.</param>
    /// <param name="length">Bytes.</param>
    /// <param name="pageSize">The page size.</param>
    /// <param name="source">Where the bytes are, for <c>UFFDIO_COPY</c>; 0 for zero pages (<c>UFFDIO_ZEROPAGE</c>).</param>
    private ulong InstallEach(nint destination, ulong length, ulong pageSize, ulong source)
    {
        ulong offset = 0, installed = 0;
        while (offset < length)
        {
            int result;
            Errno errno;
            long done;
            if (source != 0)
            {
                var copy = new uffdio_copy { dst = (ulong)destination + offset, src = source + offset, len = length - offset };
                result = Handle.TryIoctl(UFFDIO_COPY, &copy, out errno);
                done = copy.copy;
            }
            else
            {
                var zero = new uffdio_zeropage { range = new uffdio_range { start = (ulong)destination + offset, len = length - offset } };
                result = Handle.TryIoctl(UFFDIO_ZEROPAGE, &zero, out errno);
                done = zero.zeropage;
            }

            ulong advanced = done > 0 ? (ulong)done : 0;
            installed += advanced;
            offset += advanced;
            if (result >= 0)
            {
                break;
            }

            switch (errno)
            {
                case Errno.EEXIST:
                    offset += pageSize; // that page has memory: it stays as it is
                    break;
                case Errno.EAGAIN:
                    break;
                default:
                    throw KernelErrors.From("ioctl", $"installing {length - offset} bytes at 0x{(ulong)destination + offset:x} on userfaultfd", errno);
            }
        }

        return installed;
    }
}
