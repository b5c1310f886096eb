// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.InteropServices;
using System.Threading;
using DirtyLog.Memory;
using DirtyLog.Native;

namespace DirtyLog.Testing;

/// <summary>
/// Guest RAM for emulated DMA: guest-physical addresses 0 to <see cref="Size"/> - 1 in native memory, zeroed.
/// Tests read it back as the ground truth of what was written.
/// </summary>
/// <remarks>
/// Any number of threads may read and write at once; 8-byte accesses at 8-byte-aligned addresses are atomic.
/// Large sizes cost only what is touched: the zeroed allocation is committed by the OS page by page.
/// </remarks>
public sealed unsafe class EmulatedGuestMemory : IDisposable
{
    private readonly AnonymousMapping? _mapping; // owned memory: page-aligned and zeroed lazily, as a VMM's guest RAM
    private byte* _base;

    /// <summary>Maps <paramref name="size"/> bytes of zeroed, page-aligned guest memory (anonymous, touched lazily).</summary>
    /// <param name="size">Bytes, a multiple of 4096.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is zero or not a multiple of 4096.</exception>
    public EmulatedGuestMemory(ulong size)
    {
        if (size == 0 || (size & 4095) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "Guest memory must be a non-zero multiple of 4096 bytes.");
        }

        Size = size;
        _mapping = new AnonymousMapping(size);
        _base = (byte*)_mapping.Address;
    }

    private EmulatedGuestMemory(byte* memory, ulong size)
    {
        _base = memory;
        Size = size;
    }

    /// <summary>Bytes of guest memory.</summary>
    public ulong Size { get; }

    /// <summary>
    /// Emulated DMA into memory someone else mapped, such as a KVM guest's RAM: the devices then write where the
    /// vCPUs do. Disposal does not free it.
    /// </summary>
    /// <param name="memory">The guest memory.</param>
    /// <returns>Emulated guest memory over it.</returns>
    public static EmulatedGuestMemory Over(GuestMemoryView memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        return new EmulatedGuestMemory((byte*)memory.Address, memory.Size);
    }

    /// <summary>Writes <paramref name="data"/> at <paramref name="address"/>.</summary>
    /// <param name="address">The guest-physical address.</param>
    /// <param name="data">The bytes.</param>
    /// <exception cref="ArgumentOutOfRangeException">The write would leave guest memory.</exception>
    public void Write(ulong address, ReadOnlySpan<byte> data)
    {
        CheckRange(address, (ulong)data.Length);
        data.CopyTo(new Span<byte>(Base + address, data.Length));
    }

    /// <summary>Reads 8 bytes atomically (when aligned) at <paramref name="address"/>.</summary>
    /// <param name="address">The guest-physical address.</param>
    /// <returns>The value.</returns>
    public ulong ReadUInt64(ulong address)
    {
        CheckRange(address, 8);
        return Volatile.Read(ref *(ulong*)(Base + address));
    }

    /// <summary>Writes 8 bytes atomically (when aligned) at <paramref name="address"/>.</summary>
    /// <param name="address">The guest-physical address.</param>
    /// <param name="value">The value.</param>
    public void WriteUInt64(ulong address, ulong value)
    {
        CheckRange(address, 8);
        Volatile.Write(ref *(ulong*)(Base + address), value);
    }

    /// <summary>Whether [<paramref name="address"/>, + <paramref name="length"/>) lies inside guest memory.</summary>
    /// <param name="address">The first byte.</param>
    /// <param name="length">The number of bytes.</param>
    /// <returns><see langword="true"/> when it does.</returns>
    public bool Contains(ulong address, ulong length) => address < Size && length <= Size - address;

    /// <summary>A view of this memory for the page stream (valid until disposal).</summary>
    /// <returns>The view.</returns>
    public GuestMemoryView AsView() => new((nint)Base, Size);

    /// <summary>Frees the memory. Must not race other calls.</summary>
    public void Dispose()
    {
        _mapping?.Dispose();
        _base = null;
    }

    private byte* Base => _base != null ? _base : throw new ObjectDisposedException(nameof(EmulatedGuestMemory));

    private void CheckRange(ulong address, ulong length)
    {
        if (!Contains(address, length))
        {
            throw new ArgumentOutOfRangeException(nameof(address), address,
                $"[0x{address:x} +{length}) is outside guest memory of 0x{Size:x} bytes.");
        }
    }
}
