// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Mapping;

/// <summary>What an unmap does with the dirty pages of the range it removes.</summary>
public enum UnmapSync
{
    /// <summary>
    /// Reads the IOMMU trackers before the unmap and the device trackers after it, translating with the mapping
    /// being removed: no dirty page of the range is lost. The default.
    /// </summary>
    Sync,

    /// <summary>
    /// Memory unplug: the pages go away, so nothing is translated. Device logs of the range are still cleared, so
    /// that their bits cannot be attributed to a later mapping of the same IOVA.
    /// </summary>
    Discard,
}
