// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Harvesting;

/// <summary>What a harvest round does when a tracker fails or misses the round's deadline.</summary>
public enum TrackerFaultPolicy
{
    /// <summary>
    /// The round throws a <see cref="HarvestException"/> naming the tracker and the cause. The tracker's coverage is
    /// marked dirty all the same and what the other trackers reported stays in the shared bitmap, so the next round,
    /// if the caller runs one, loses nothing.
    /// </summary>
    FailRound,

    /// <summary>
    /// Everything the tracker covers is marked dirty and the round goes on: nothing is lost, convergence is slower.
    /// </summary>
    MarkCoverageDirty,
}
