// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Tracking;

/// <summary>The life cycle of a tracker.</summary>
public enum DirtyTrackerState
{
    /// <summary>Not logging: created, stopped, or never started.</summary>
    Stopped,

    /// <summary>Logging: reads return what was written since the last read.</summary>
    Started,

    /// <summary>A read or start failed; what it covers must be treated as dirty. Stop is still safe and required.</summary>
    Faulted,
}
