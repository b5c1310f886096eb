// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;

namespace DirtyLog.Tracking;

/// <summary>The mapped IOVA ranges of an address space, as its correlator knows them, for the IOMMU tracker to query.</summary>
/// <remarks>
/// Implementations are thread-safe, and callable from a thread that is changing the map (the unmap's sync read).
/// Lock order: the map's lock (<see cref="EnterRead"/>) before the tracker's own; a tracker that queries the map takes
/// it first, for its whole read, so that an unmap (map lock, then tracker lock) can never wait on it in reverse.
/// </remarks>
internal interface IMappedRangeSource
{
    /// <summary>Takes the map's lock for reading (recursively, also under its write lock); held for a whole tracker read.</summary>
    void EnterRead();

    /// <summary>Releases what <see cref="EnterRead"/> took.</summary>
    void ExitRead();

    /// <summary>Whether the calling thread holds the map's lock, in any mode (asserted by readers in debug builds).</summary>
    bool IsHeldByCurrentThread { get; }

    /// <summary>The mapped ranges that intersect <paramref name="range"/>, adjacent ones joined, in IOVA order.</summary>
    IReadOnlyList<AddressRange> MappedWithin(AddressRange range);

    /// <summary>Every mapped range, adjacent ones joined, in IOVA order.</summary>
    IReadOnlyList<AddressRange> AllMapped();
}
