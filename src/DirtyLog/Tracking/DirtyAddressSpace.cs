// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking;

/// <summary>
/// The address space a tracker reports in: guest-physical addresses (KVM, userfaultfd over guest RAM), or the IOVA
/// space of one IO address space (an iommufd IOAS, a vIOMMU domain), whose dirties the correlator translates.
/// </summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
public readonly struct DirtyAddressSpace : IEquatable<DirtyAddressSpace>
{
    private DirtyAddressSpace(bool isIova, uint ioAddressSpaceId)
    {
        IsIova = isIova;
        IoAddressSpaceId = ioAddressSpaceId;
    }

    /// <summary>Guest-physical addresses.</summary>
    public static DirtyAddressSpace GuestPhysical => default;

    /// <summary>Whether addresses are IOVAs (otherwise guest-physical).</summary>
    public bool IsIova { get; }

    /// <summary>For an IOVA space, the id of its IO address space.</summary>
    public uint IoAddressSpaceId { get; }

    /// <summary>The IOVA space of one IO address space.</summary>
    /// <param name="ioAddressSpaceId">The IO address space (an IOAS id, or a vIOMMU domain chosen by the VMM).</param>
    /// <returns>The address space.</returns>
    public static DirtyAddressSpace Iova(uint ioAddressSpaceId) => new(true, ioAddressSpaceId);

    /// <inheritdoc/>
    public bool Equals(DirtyAddressSpace other) => IsIova == other.IsIova && IoAddressSpaceId == other.IoAddressSpaceId;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is DirtyAddressSpace other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(IsIova, IoAddressSpaceId);

    /// <summary>Compares two address spaces.</summary>
    /// <param name="left">The first.</param>
    /// <param name="right">The second.</param>
    /// <returns>Whether they are the same.</returns>
    public static bool operator ==(DirtyAddressSpace left, DirtyAddressSpace right) => left.Equals(right);

    /// <summary>Compares two address spaces.</summary>
    /// <param name="left">The first.</param>
    /// <param name="right">The second.</param>
    /// <returns>Whether they differ.</returns>
    public static bool operator !=(DirtyAddressSpace left, DirtyAddressSpace right) => !left.Equals(right);

    /// <inheritdoc/>
    public override string ToString() => IsIova ? $"IOVA of IO address space {IoAddressSpaceId}" : "guest-physical";
}
