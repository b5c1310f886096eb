// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Tracking;

/// <summary>Whether a read clears what it returns.</summary>
public enum DirtyReadMode
{
    /// <summary>Read and clear: the next read returns only what was written after this one.</summary>
    Clear,

    /// <summary>Read without clearing (only trackers with <see cref="IDirtyTracker.CanReadWithoutClear"/>): used before an IOMMU unmap, which drops the bits anyway.</summary>
    NoClear,
}
