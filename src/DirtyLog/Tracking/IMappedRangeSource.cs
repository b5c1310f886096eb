// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;

namespace DirtyLog.Tracking;

/// <summary>The mapped IOVA ranges of an address space, as its correlator knows them, for the IOMMU tracker to query.</summary>
/// <remarks>Implementations are thread-safe, and callable from a thread that is changing the map (the unmap's sync read).</remarks>
internal interface IMappedRangeSource
{
    /// <summary>The mapped ranges that intersect <paramref name="range"/>, adjacent ones joined, in IOVA order.</summary>
    IReadOnlyList<AddressRange> MappedWithin(AddressRange range);

    /// <summary>Every mapped range, adjacent ones joined, in IOVA order.</summary>
    IReadOnlyList<AddressRange> AllMapped();
}
