// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace DirtyLog.Native.Internal;

/// <summary>
/// Owns one <c>mmap</c>ed range: unmaps it exactly once, on dispose or, if its owner was never disposed, from the
/// critical finalizer (so a leaked vCPU or ring does not leak its mapping for the life of the process).
/// </summary>
/// <remarks>
/// Thread safety: <see cref="SafeHandle"/>'s. Owners read <see cref="Pointer"/> once and guard their own uses of the
/// memory against their dispose (<see cref="RetireGate"/>): the handle's reference count is not taken on hot paths.
/// </remarks>
[SupportedOSPlatform("linux")]
internal sealed unsafe class MemoryMappingHandle : SafeHandle
{
    private MemoryMappingHandle(void* address, nuint length)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        Length = length;
        SetHandle((IntPtr)address);
    }

    /// <summary>The first byte of the mapping.</summary>
    public byte* Pointer => (byte*)handle;

    /// <summary>Bytes mapped.</summary>
    public nuint Length { get; }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Maps <paramref name="length"/> bytes of <paramref name="file"/> at <paramref name="offset"/>, shared and read-write.</summary>
    /// <param name="file">The descriptor (a vCPU).</param>
    /// <param name="length">Bytes.</param>
    /// <param name="offset">Offset in the file, page-aligned.</param>
    /// <param name="what">What is mapped, for the error message.</param>
    /// <returns>The mapping.</returns>
    /// <exception cref="KernelException">mmap failed.</exception>
    public static MemoryMappingHandle MapShared(FileDescriptorHandle file, nuint length, long offset, string what)
    {
        void* address = Interop.mmap(null, length, Interop.PROT_READ | Interop.PROT_WRITE, Interop.MAP_SHARED, file, offset);
        if (address == (void*)-1)
        {
            throw KernelErrors.Last("mmap", $"{what} of {file.Path}");
        }

        return new MemoryMappingHandle(address, length);
    }

    /// <summary>Maps <paramref name="length"/> bytes of private, zeroed, unreserved memory.</summary>
    /// <param name="length">Bytes.</param>
    /// <returns>The mapping.</returns>
    /// <exception cref="KernelException">mmap failed.</exception>
    public static MemoryMappingHandle MapAnonymous(nuint length)
    {
        void* address = Interop.mmap_anonymous(null, length, Interop.PROT_READ | Interop.PROT_WRITE,
            Interop.MAP_PRIVATE | Interop.MAP_ANONYMOUS | Interop.MAP_NORESERVE, -1, 0);
        if (address == (void*)-1)
        {
            throw KernelErrors.Last("mmap", $"{length} anonymous bytes");
        }

        return new MemoryMappingHandle(address, length);
    }

    /// <summary>Takes ownership of a range the kernel mapped elsewhere (where <c>mremap</c> moved pages to).</summary>
    /// <param name="address">The first byte.</param>
    /// <param name="length">Bytes.</param>
    /// <returns>The mapping, unmapped on dispose.</returns>
    public static MemoryMappingHandle Adopt(void* address, nuint length) => new(address, length);

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => Interop.munmap((void*)handle, Length) == 0;
}
