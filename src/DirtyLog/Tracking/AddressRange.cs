// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking;

/// <summary>A range of byte addresses in one address space: <see cref="Length"/> bytes from <see cref="Start"/>.</summary>
public readonly struct AddressRange : IEquatable<AddressRange>
{
    /// <summary>Creates a range.</summary>
    /// <param name="start">The first byte.</param>
    /// <param name="length">The number of bytes.</param>
    /// <exception cref="ArgumentOutOfRangeException">The range would end past 2^64.</exception>
    public AddressRange(ulong start, ulong length)
    {
        if (length != 0 && start + length - 1 < start)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"[0x{start:x} +0x{length:x}) overflows a 64-bit address.");
        }

        Start = start;
        Length = length;
    }

    /// <summary>The first byte.</summary>
    public ulong Start { get; }

    /// <summary>The number of bytes.</summary>
    public ulong Length { get; }

    /// <summary>The byte just past the range (0 when the range ends at 2^64).</summary>
    public ulong End => Start + Length;

    /// <summary>Whether the range is empty.</summary>
    public bool IsEmpty => Length == 0;

    /// <summary>The overlap of two ranges (empty when they are disjoint).</summary>
    /// <param name="other">The other range.</param>
    /// <returns>The intersection.</returns>
    public AddressRange Intersect(AddressRange other)
    {
        ulong start = Math.Max(Start, other.Start);
        ulong lastA = Start + Length - 1, lastB = other.Start + other.Length - 1;
        if (IsEmpty || other.IsEmpty || start > Math.Min(lastA, lastB))
        {
            return default;
        }

        return new AddressRange(start, Math.Min(lastA, lastB) - start + 1);
    }

    /// <summary>Whether <paramref name="alignment"/> (a power of two) divides both the start and the length.</summary>
    /// <param name="alignment">The alignment in bytes.</param>
    /// <returns><see langword="true"/> when aligned.</returns>
    public bool IsAlignedTo(ulong alignment) => ((Start | Length) & (alignment - 1)) == 0;

    /// <inheritdoc/>
    public bool Equals(AddressRange other) => Start == other.Start && Length == other.Length;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is AddressRange other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Start, Length);

    /// <summary>Compares two ranges.</summary>
    /// <param name="left">The first range.</param>
    /// <param name="right">The second range.</param>
    /// <returns>Whether they are equal.</returns>
    public static bool operator ==(AddressRange left, AddressRange right) => left.Equals(right);

    /// <summary>Compares two ranges.</summary>
    /// <param name="left">The first range.</param>
    /// <param name="right">The second range.</param>
    /// <returns>Whether they differ.</returns>
    public static bool operator !=(AddressRange left, AddressRange right) => !left.Equals(right);

    /// <inheritdoc/>
    public override string ToString() => $"[0x{Start:x}, 0x{End:x})";
}
