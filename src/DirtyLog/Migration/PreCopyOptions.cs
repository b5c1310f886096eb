// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration;

/// <summary>When pre-copy switches over, gives up or throttles.</summary>
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
        if (!Enum.IsDefined(StallPolicy))
        {
            throw new ArgumentOutOfRangeException(nameof(StallPolicy), StallPolicy, "Not a defined stall policy.");
        }
    }
}
