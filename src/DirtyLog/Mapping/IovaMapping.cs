// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Mapping;

/// <summary>One IOVA range mapped onto guest-physical memory: <c>[Iova, Iova + Length)</c> to <c>[GuestAddress, ...)</c>.</summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
/// <param name="Iova">The first IO virtual address.</param>
/// <param name="GuestAddress">The guest-physical address it translates to.</param>
/// <param name="Length">Bytes mapped.</param>
public readonly record struct IovaMapping(ulong Iova, ulong GuestAddress, ulong Length)
{
    /// <summary>The IOVA just past the mapping.</summary>
    public ulong End => Iova + Length;

    /// <summary>Whether <paramref name="iova"/> lies in the mapping.</summary>
    /// <param name="iova">An IOVA.</param>
    /// <returns><see langword="true"/> when mapped by this mapping.</returns>
    public bool Contains(ulong iova) => iova - Iova < Length;

    /// <summary>The guest-physical address of <paramref name="iova"/>, which must lie in the mapping.</summary>
    /// <param name="iova">An IOVA in the mapping.</param>
    /// <returns>Its guest-physical address.</returns>
    public ulong Translate(ulong iova) => GuestAddress + (iova - Iova);

    /// <inheritdoc/>
    public override string ToString() => $"IOVA [0x{Iova:x}, 0x{End:x}) -> GPA 0x{GuestAddress:x}";
}
