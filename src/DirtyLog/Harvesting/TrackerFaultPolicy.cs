// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Harvesting;

/// <summary>What a harvest round does when a tracker fails or misses the round's deadline.</summary>
public enum TrackerFaultPolicy
{
    /// <summary>
    /// The round throws a <see cref="HarvestException"/> naming the tracker and the cause. What the other trackers
    /// reported stays in the shared bitmap for the next round.
    /// </summary>
    FailRound,

    /// <summary>
    /// Everything the tracker covers is marked dirty and the round goes on: nothing is lost, convergence is slower.
    /// </summary>
    MarkCoverageDirty,
}
