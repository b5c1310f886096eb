// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Mapping;

/// <summary>Deliberately wrong unmap orderings, for tests that show the stress test catches them.</summary>
internal enum UnmapOrdering
{
    /// <summary>The documented order.</summary>
    Correct,

    /// <summary>Wrong: device trackers read before the backend unmap (writes landing in between are lost).</summary>
    DeviceReadBeforeUnmap,

    /// <summary>Wrong: device dirties translated with the map after the change (the removed mapping is gone).</summary>
    TranslateWithNewMap,
}
