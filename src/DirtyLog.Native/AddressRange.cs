// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking;

/// <summary>
/// A range of byte addresses in one address space (guest-physical, IOVA or host-virtual): <see cref="Length"/> bytes
/// from <see cref="Start"/>. It is the one range type of every layer, from the kernel bindings up.
/// </summary>
/// <remarks>
/// <para>It lives in the lowest package, under the namespace its users know it by, so that the bindings and the
/// trackers pass the same values without copying one range type into another.</para>
/// <para>A range may end exactly at 2^64 (<see cref="End"/> is then 0), but no range spans all 2^64 bytes: no 64-bit
/// length says 2^64. The kernel's inclusive <c>[start, last]</c> windows convert with <see cref="FromInclusive"/>,
/// which splits the whole space into its two halves.</para>
/// <para>Thread safety: an immutable value.</para>
/// </remarks>
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

    /// <summary>The last byte, inclusive, as the kernel's <c>iommu_iova_range.last</c> counts it.</summary>
    /// <exception cref="InvalidOperationException">The range is empty.</exception>
    public ulong Last => Length != 0 ? Start + Length - 1 : throw new InvalidOperationException("An empty range has no last byte.");

    /// <summary>
    /// The ranges covering the inclusive window <c>[<paramref name="first"/>, <paramref name="last"/>]</c>: one range,
    /// or two halves of equal length when the window is the whole 64-bit space.
    /// </summary>
    /// <param name="first">The first byte.</param>
    /// <param name="last">The last byte, inclusive.</param>
    /// <returns>One or two adjacent ranges whose union is the window.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="last"/> is below <paramref name="first"/>.</exception>
    public static AddressRange[] FromInclusive(ulong first, ulong last)
    {
        if (last < first)
        {
            throw new ArgumentOutOfRangeException(nameof(last), last, $"The last byte is below the first (0x{first:x}).");
        }

        if (first == 0 && last == ulong.MaxValue)
        {
            return [new AddressRange(0, 1UL << 63), new AddressRange(1UL << 63, 1UL << 63)];
        }

        return [new AddressRange(first, last - first + 1)];
    }

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
