// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Memory;

/// <summary>
/// Guest-physical memory 0 to <see cref="Size"/> - 1 as this process maps it (a KVM guest's RAM, emulated guest
/// memory): what the page stream reads from on the source and writes to on the destination.
/// </summary>
/// <remarks>
/// It does not own the memory; whoever mapped it keeps it alive for as long as the view is used. Every access is
/// checked against <see cref="Size"/>. Thread safety: the memory is shared; the view adds no state.
/// </remarks>
public sealed unsafe class GuestMemoryView
{
    private readonly byte* _base;

    /// <summary>Wraps <paramref name="size"/> bytes at <paramref name="address"/>.</summary>
    /// <param name="address">Where guest-physical address 0 is mapped in this process.</param>
    /// <param name="size">Bytes of guest memory, a multiple of 4096.</param>
    /// <exception cref="ArgumentException">The address is null or the size is zero or not a multiple of 4096.</exception>
    public GuestMemoryView(nint address, ulong size)
    {
        if (address == 0 || size == 0 || (size & 4095) != 0)
        {
            throw new ArgumentException($"Guest memory at 0x{address:x} of {size} bytes: the address must be mapped and the size a non-zero multiple of 4096.", nameof(size));
        }

        _base = (byte*)address;
        Size = size;
    }

    /// <summary>Where guest-physical address 0 is mapped in this process.</summary>
    public nint Address => (nint)_base;

    /// <summary>Bytes of guest memory.</summary>
    public ulong Size { get; }

    /// <summary>The bytes at [<paramref name="address"/>, + <paramref name="length"/>).</summary>
    /// <param name="address">The guest-physical address.</param>
    /// <param name="length">Bytes.</param>
    /// <returns>A span over guest memory (it may change under the reader while the guest runs).</returns>
    /// <exception cref="ArgumentOutOfRangeException">The range leaves guest memory.</exception>
    public Span<byte> Slice(ulong address, int length)
    {
        if (length < 0 || address >= Size || (ulong)length > Size - address)
        {
            throw new ArgumentOutOfRangeException(nameof(address), address, $"[0x{address:x}, +{length}) is outside the {Size:N0} bytes of guest memory.");
        }

        return new Span<byte>(_base + address, length);
    }
}
