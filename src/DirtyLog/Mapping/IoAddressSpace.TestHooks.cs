// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Mapping;

/// <summary>
/// Test hooks, internal: deliberately wrong unmap orderings that the correlator's stress test must catch. They cost
/// one field read per unmap, never a read or a translation.
/// </summary>
public sealed partial class IoAddressSpace
{
    /// <summary>The unmap ordering; anything but <see cref="UnmapOrdering.Correct"/> is a deliberately broken protocol.</summary>
    internal UnmapOrdering Ordering { get; set; }

    /// <summary>Broken ordering: device trackers read before the backend unmaps.</summary>
    private bool ReadsDevicesBeforeUnmap(UnmapSync sync) => Ordering == UnmapOrdering.DeviceReadBeforeUnmap && sync == UnmapSync.Sync;

    /// <summary>The table device dirties are translated with: the removed mappings, or (broken) the map after the change.</summary>
    private MappingTable DeviceTranslation(MappingTable removed) => Ordering == UnmapOrdering.TranslateWithNewMap ? _table : removed;
}
