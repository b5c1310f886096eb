// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.Versioning;
using DirtyLog.Native.Internal;

namespace DirtyLog.Native;

/// <summary>
/// Anonymous private memory from <c>mmap</c> (MAP_NORESERVE: pages cost nothing until touched), unmapped on dispose:
/// guest RAM for a KVM memory slot, or memory the VMM's own threads write.
/// </summary>
/// <remarks>Thread safety: the memory itself may be accessed from any thread; <see cref="Dispose"/> must not race users.</remarks>
[SupportedOSPlatform("linux")]
public sealed unsafe class AnonymousMapping : IDisposable
{
    private readonly MemoryMappingHandle _mapping;
    private byte* _address; // null once disposed

    /// <summary>Maps <paramref name="length"/> bytes of zeroed memory.</summary>
    /// <param name="length">Bytes, a multiple of 4096.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is zero or not a multiple of 4096.</exception>
    /// <exception cref="KernelException">mmap failed.</exception>
    public AnonymousMapping(ulong length)
    {
        if (length == 0 || (length & 4095) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, "The length must be a non-zero multiple of 4096.");
        }

        _mapping = MemoryMappingHandle.MapAnonymous((nuint)length);
        _address = _mapping.Pointer;
        Length = length;
    }

    /// <summary>The address in this process.</summary>
    public nint Address => _address != null ? (nint)_address : throw new ObjectDisposedException(nameof(AnonymousMapping));

    /// <summary>Bytes mapped.</summary>
    public ulong Length { get; }

    /// <summary>Reads 8 bytes at <paramref name="offset"/>.</summary>
    /// <param name="offset">Bytes from the start, 8-byte aligned for atomicity.</param>
    /// <returns>The value.</returns>
    public ulong ReadUInt64(ulong offset)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, Length - 8);
        return System.Threading.Volatile.Read(ref *(ulong*)((byte*)Address + offset));
    }

    /// <summary>Writes 8 bytes at <paramref name="offset"/>.</summary>
    /// <param name="offset">Bytes from the start.</param>
    /// <param name="value">The value.</param>
    public void WriteUInt64(ulong offset, ulong value)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, Length - 8);
        System.Threading.Volatile.Write(ref *(ulong*)((byte*)Address + offset), value);
    }

    /// <summary>Copies <paramref name="data"/> to <paramref name="offset"/>.</summary>
    /// <param name="offset">Bytes from the start.</param>
    /// <param name="data">The bytes.</param>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset > Length || (ulong)data.Length > Length - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, "The write would leave the mapping.");
        }

        data.CopyTo(new Span<byte>((byte*)Address + offset, data.Length));
    }

    /// <summary>Bytes of the mapping backed by memory now: the pages touched since it was mapped.</summary>
    /// <returns>Resident pages (by <c>mincore</c>) times the system's page size.</returns>
    /// <exception cref="ObjectDisposedException">The mapping was disposed.</exception>
    /// <exception cref="KernelException">mincore failed.</exception>
    /// <remarks>
    /// A page only read maps the kernel's shared zero page and counts as resident, though it costs no memory. The
    /// call walks the page tables of the whole range, about a millisecond per 8 GiB mapped: a diagnostic, not a hot path.
    /// </remarks>
    public ulong ResidentBytes()
    {
        byte* start = (byte*)Address;
        ulong pageSize = (ulong)Environment.SystemPageSize;
        const int Chunk = 16384; // pages per call: a stack buffer of 16 KiB covers 64 MiB of 4 KiB pages
        byte* vec = stackalloc byte[Chunk];
        ulong resident = 0;
        for (ulong offset = 0; offset < Length; offset += Chunk * pageSize)
        {
            ulong bytes = Math.Min(Length - offset, Chunk * pageSize);
            if (Interop.mincore(start + offset, (nuint)bytes, vec) != 0)
            {
                throw KernelErrors.Last("mincore", $"{Length} anonymous bytes");
            }

            int pages = (int)((bytes + pageSize - 1) / pageSize);
            for (int i = 0; i < pages; i++)
            {
                resident += (ulong)(vec[i] & 1);
            }
        }

        return resident * pageSize;
    }

    /// <summary>Allows or forbids transparent huge pages in the mapping (<c>madvise</c> MADV_HUGEPAGE or MADV_NOHUGEPAGE).</summary>
    /// <param name="enabled">
    /// <see langword="true"/> for guest RAM touched densely (fewer TLB misses); <see langword="false"/> for memory touched
    /// sparsely, where one touched byte would otherwise cost a whole huge page.
    /// </param>
    /// <exception cref="ObjectDisposedException">The mapping was disposed.</exception>
    /// <exception cref="KernelException">madvise failed (EINVAL on a kernel built without transparent huge pages).</exception>
    public void SetHugePages(bool enabled)
    {
        if (Interop.madvise((void*)Address, (nuint)Length, enabled ? Interop.MADV_HUGEPAGE : Interop.MADV_NOHUGEPAGE) != 0)
        {
            throw KernelErrors.Last("madvise", $"{Length} anonymous bytes");
        }
    }

    /// <summary>
    /// Gives a range's memory back to the kernel (<c>madvise</c> MADV_DONTNEED): it reads as zeros again and costs
    /// nothing until touched.
    /// </summary>
    /// <param name="offset">Bytes from the start, a multiple of 4096.</param>
    /// <param name="length">Bytes, a multiple of 4096.</param>
    /// <exception cref="ArgumentOutOfRangeException">The range is unaligned or leaves the mapping.</exception>
    /// <exception cref="ObjectDisposedException">The mapping was disposed.</exception>
    /// <exception cref="KernelException">madvise failed.</exception>
    public void Discard(ulong offset, ulong length)
    {
        if (((offset | length) & 4095) != 0 || offset > Length || length > Length - offset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"The range of {length} bytes must be 4096-aligned and inside the {Length} bytes mapped.");
        }

        if (length != 0 && Interop.madvise((byte*)Address + offset, (nuint)length, Interop.MADV_DONTNEED) != 0)
        {
            throw KernelErrors.Last("madvise", $"MADV_DONTNEED of {length} anonymous bytes");
        }
    }

    /// <summary>Unmaps the memory (a mapping never disposed is unmapped by its handle's finalizer).</summary>
    public void Dispose()
    {
        _address = null;
        _mapping.Dispose();
    }
}
