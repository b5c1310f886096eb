// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Mapping;

namespace DirtyLog.Testing;

/// <summary>The map backend of one IOAS of the emulated IOMMU: <c>IOMMU_IOAS_MAP</c> and <c>IOMMU_IOAS_UNMAP</c> with the kernel's rules.</summary>
/// <remarks>Like iommufd it cannot cut a mapping. Thread safety: as the emulated IOMMU (any thread).</remarks>
public sealed class EmulatedIoMapBackend : IIoMapBackend
{
    private readonly EmulatedIommu _iommu;
    private readonly uint _ioasId;
    private readonly ulong _maxEntrySize;

    /// <summary>Creates the backend of one IOAS.</summary>
    /// <param name="iommu">The emulated IOMMU.</param>
    /// <param name="ioasId">The IOAS.</param>
    /// <param name="maxEntrySize">The largest IO page table entry its maps use: 4 KiB, 2 MiB or 1 GiB.</param>
    public EmulatedIoMapBackend(EmulatedIommu iommu, uint ioasId, ulong maxEntrySize = 1UL << 30)
    {
        ArgumentNullException.ThrowIfNull(iommu);
        _iommu = iommu;
        _ioasId = ioasId;
        _maxEntrySize = maxEntrySize;
    }

    /// <inheritdoc/>
    public ulong IovaAlignment => _iommu.IovaAlignment;

    /// <inheritdoc/>
    public bool AllowsPartialUnmap => false;

    /// <inheritdoc/>
    public void Map(ulong iova, ulong guestAddress, ulong length) => _iommu.Map(_ioasId, iova, guestAddress, length, _maxEntrySize);

    /// <inheritdoc/>
    public void Unmap(ulong iova, ulong length) => _iommu.Unmap(_ioasId, iova, length);
}
