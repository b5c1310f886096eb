// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Mapping;

/// <summary>
/// What actually changes an IO address space's translations: an iommufd IOAS, a VFIO container, or the emulated
/// IOMMU. The correlator calls it at the right point of each ordered operation.
/// </summary>
/// <remarks>Thread safety: the correlator calls a backend with its address space's change lock held: one map or unmap at a time per address space, never during a read of that space. A backend shared by several address spaces may be called by them at once and must be thread-safe.</remarks>
public interface IIoMapBackend
{
    /// <summary>The alignment of IOVAs, guest addresses and lengths (the IOMMU's smallest page).</summary>
    ulong IovaAlignment { get; }

    /// <summary>Whether an unmap may cut a mapping (iommufd refuses to: the range must cover whole areas).</summary>
    bool AllowsPartialUnmap { get; }

    /// <summary>Maps <paramref name="length"/> bytes at <paramref name="iova"/> onto <paramref name="guestAddress"/>.</summary>
    /// <param name="iova">The IOVA.</param>
    /// <param name="guestAddress">The guest-physical address.</param>
    /// <param name="length">Bytes.</param>
    void Map(ulong iova, ulong guestAddress, ulong length);

    /// <summary>Unmaps <paramref name="length"/> bytes at <paramref name="iova"/>; DMA to them faults from the moment it returns.</summary>
    /// <param name="iova">The IOVA.</param>
    /// <param name="length">Bytes.</param>
    void Unmap(ulong iova, ulong length);
}
