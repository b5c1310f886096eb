// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Harvesting;

/// <summary>How one tracker took part in a round.</summary>
public enum TrackerRoundOutcome
{
    /// <summary>It was read in time.</summary>
    Read,

    /// <summary>Its read failed; its coverage was marked dirty.</summary>
    Faulted,

    /// <summary>It missed the deadline (or was still busy with an earlier round); its coverage was marked dirty.</summary>
    Late,
}
