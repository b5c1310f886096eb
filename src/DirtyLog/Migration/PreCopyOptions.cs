// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration;

/// <summary>When pre-copy switches over, gives up or throttles.</summary>
/// <remarks>Thread safety: immutable once built (init-only); safe to share between controllers and threads.</remarks>
public sealed record PreCopyOptions
{
    /// <summary>The longest acceptable stop-copy: switch over once the dirty set can be sent within it. 300 ms, as QEMU.</summary>
    public TimeSpan DowntimeLimit { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>Rounds in a row without a new smallest dirty set before <see cref="StallPolicy"/> applies.</summary>
    public int StallRounds { get; init; } = 5;

    /// <summary>What to do when the dirty set stops shrinking.</summary>
    public StallPolicy StallPolicy { get; init; } = StallPolicy.ForceStopCopy;

    /// <summary>The round budget: switch over after this many pre-copy rounds whatever the estimate.</summary>
    public int MaxRounds { get; init; } = 30;

    /// <summary>
    /// Once the expected downtime fits <see cref="DowntimeLimit"/>, copy on while each round's dirty set is at most this
    /// fraction of the previous round's and the expected downtime is above <see cref="DowntimeGoal"/>: a round that
    /// halves the dirty set halves the downtime for the time of a round half as long as the last. 0 (the default)
    /// switches over at the first fit, as QEMU does; 1 copies on while the dirty set shrinks at all.
    /// </summary>
    public double KeepCopyingWhileShrinkingTo { get; init; }

    /// <summary>
    /// With <see cref="KeepCopyingWhileShrinkingTo"/>: an expected downtime this short switches over whatever the trend
    /// (another round would cost more than it saves). 1 ms by default.
    /// </summary>
    public TimeSpan DowntimeGoal { get; init; } = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// Whether pre-copy that does not converge switches to post-copy (<see cref="PreCopyAction.PostCopy"/>) instead of a
    /// stop-copy over the downtime limit: when the round budget is spent, or the dirty set stalls (whatever the stall
    /// policy but <see cref="StallPolicy.Abort"/>), with the expected downtime over <see cref="DowntimeLimit"/>.
    /// <see langword="false"/> by default. A migration session sets it only where the destination granted post-copy.
    /// </summary>
    public bool SwitchToPostCopy { get; init; }

    /// <summary>Bytes per guest page.</summary>
    public long PageSize { get; init; } = 4096;

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(DowntimeLimit, TimeSpan.Zero, nameof(DowntimeLimit));
        ArgumentOutOfRangeException.ThrowIfLessThan(StallRounds, 1, nameof(StallRounds));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRounds, 1, nameof(MaxRounds));
        ArgumentOutOfRangeException.ThrowIfLessThan(PageSize, 1, nameof(PageSize));
        if (!(KeepCopyingWhileShrinkingTo is >= 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(KeepCopyingWhileShrinkingTo), KeepCopyingWhileShrinkingTo, "A fraction from 0 to 1.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(DowntimeGoal, TimeSpan.Zero, nameof(DowntimeGoal));
        if (!Enum.IsDefined(StallPolicy))
        {
            throw new ArgumentOutOfRangeException(nameof(StallPolicy), StallPolicy, "Not a defined stall policy.");
        }
    }
}
