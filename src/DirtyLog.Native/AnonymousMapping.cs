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

    /// <summary>Unmaps the memory (a mapping never disposed is unmapped by its handle's finalizer).</summary>
    public void Dispose()
    {
        _address = null;
        _mapping.Dispose();
    }
}
