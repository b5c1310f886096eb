// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native;

internal static partial class Interop
{
    internal const int PROT_READ = 1;
    internal const int PROT_WRITE = 2;
    internal const int MAP_SHARED = 0x01;
    internal const int MAP_PRIVATE = 0x02;
    internal const int MAP_ANONYMOUS = 0x20;
    internal const int MAP_NORESERVE = 0x4000;
    internal const int MADV_DONTNEED = 4;
    internal const int MADV_HUGEPAGE = 14;
    internal const int MADV_NOHUGEPAGE = 15;

    /// <summary>
    /// <c>void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)</c> of a file (a vCPU's
    /// <c>kvm_run</c> or dirty ring); MAP_FAILED is -1. The descriptor is referenced for the call only: the mapping
    /// itself keeps the file alive in the kernel.
    /// </summary>
    [LibraryImport(Libc, EntryPoint = "mmap", SetLastError = true)]
    internal static unsafe partial void* mmap(void* addr, nuint length, int prot, int flags, SafeHandle fd, long offset);

    /// <summary><c>mmap</c> with no file (MAP_ANONYMOUS, fd -1).</summary>
    [LibraryImport(Libc, EntryPoint = "mmap", SetLastError = true)]
    internal static unsafe partial void* mmap_anonymous(void* addr, nuint length, int prot, int flags, int fd, long offset);

    /// <summary><c>int munmap(void *addr, size_t length)</c>. Only <see cref="Internal.MemoryMappingHandle"/> calls it.</summary>
    [LibraryImport(Libc, EntryPoint = "munmap", SetLastError = true)]
    internal static unsafe partial int munmap(void* addr, nuint length);

    /// <summary><c>int madvise(void *addr, size_t length, int advice)</c>.</summary>
    [LibraryImport(Libc, EntryPoint = "madvise", SetLastError = true)]
    internal static unsafe partial int madvise(void* addr, nuint length, int advice);

    /// <summary>
    /// <c>int mincore(void *addr, size_t length, unsigned char *vec)</c>: bit 0 of each byte of <paramref name="vec"/> tells
    /// whether that page of the range is resident (for anonymous memory: present in the page tables).
    /// </summary>
    [LibraryImport(Libc, EntryPoint = "mincore", SetLastError = true)]
    internal static unsafe partial int mincore(void* addr, nuint length, byte* vec);
}
