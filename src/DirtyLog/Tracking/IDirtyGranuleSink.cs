// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking;

/// <summary>
/// Receives what a tracker read, one chunk at a time, in the kernel's format: bit <c>k</c> of the words means the
/// granule at <c>address + k × granuleSize</c> was written. The correlator implements it to translate IOVA chunks
/// straight into guest pages; <see cref="IDirtyTracker.ReadDirty(AddressRange, Bitmaps.SparseDirtyBitmap, DirtyReadMode)"/>
/// uses one that merges into a bitmap.
/// </summary>
/// <remarks>Thread safety: called on the reading thread, under the tracker's lock, in ascending address order; the span is valid only during the call.</remarks>
public interface IDirtyGranuleSink
{
    /// <summary>One chunk of a read.</summary>
    /// <param name="address">The address of bit 0, in the tracker's address space.</param>
    /// <param name="granuleSize">Bytes per bit (the tracker's page size).</param>
    /// <param name="bitmap">The words; bits past <paramref name="bitCount"/> are zero.</param>
    /// <param name="bitCount">How many bits the chunk covers.</param>
    void Accept(ulong address, long granuleSize, ReadOnlySpan<ulong> bitmap, ulong bitCount);
}
