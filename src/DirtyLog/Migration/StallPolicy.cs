// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration;

/// <summary>What pre-copy does when the dirty set stops shrinking.</summary>
public enum StallPolicy
{
    /// <summary>Switch over anyway, accepting a longer downtime.</summary>
    ForceStopCopy,

    /// <summary>Give up the migration; the guest keeps running on the source.</summary>
    Abort,

    /// <summary>Ask the throttle callback to slow the guest, and keep copying.</summary>
    Throttle,
}
