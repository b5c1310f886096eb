// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Harvesting;

/// <summary>How a <see cref="ParallelHarvester"/> runs its rounds.</summary>
public sealed record HarvesterOptions
{
    /// <summary>
    /// Whether rounds attribute pages to trackers (<see cref="TrackerRoundReport.ExclusivePages"/>,
    /// <see cref="HarvestRound.PagesSeenBySeveral"/>). Each tracker then reads into a bitmap of its own before the
    /// shared one, which costs one more pass over its pages. On by default: knowing which writer keeps the guest from
    /// converging is worth it outside stop-copy.
    /// </summary>
    public bool Attribution { get; init; } = true;
}
