// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Native;

/// <summary>A range of IO virtual addresses: <see cref="Length"/> bytes from <see cref="Iova"/>.</summary>
public readonly struct IovaRange : IEquatable<IovaRange>
{
    /// <summary>Creates a range.</summary>
    /// <param name="iova">The first byte.</param>
    /// <param name="length">The number of bytes.</param>
    public IovaRange(ulong iova, ulong length)
    {
        Iova = iova;
        Length = length;
    }

    /// <summary>The first byte.</summary>
    public ulong Iova { get; }

    /// <summary>The number of bytes.</summary>
    public ulong Length { get; }

    /// <summary>The last byte (inclusive), as the kernel's <c>iommu_iova_range.last</c> counts it.</summary>
    public ulong Last => Iova + Length - 1;

    /// <inheritdoc/>
    public bool Equals(IovaRange other) => Iova == other.Iova && Length == other.Length;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is IovaRange other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Iova, Length);

    /// <summary>Compares two ranges.</summary>
    /// <param name="left">The first range.</param>
    /// <param name="right">The second range.</param>
    /// <returns>Whether they are equal.</returns>
    public static bool operator ==(IovaRange left, IovaRange right) => left.Equals(right);

    /// <summary>Compares two ranges.</summary>
    /// <param name="left">The first range.</param>
    /// <param name="right">The second range.</param>
    /// <returns>Whether they differ.</returns>
    public static bool operator !=(IovaRange left, IovaRange right) => !left.Equals(right);

    /// <inheritdoc/>
    public override string ToString() => $"[0x{Iova:x}, 0x{Iova + Length:x})";
}
