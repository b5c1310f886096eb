// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration.Sessions;

/// <summary>Whether and when a source session switches from pre-copy to post-copy.</summary>
public enum PostCopyPolicy
{
    /// <summary>Never: pre-copy ends with a stop-copy, whatever its downtime. The default.</summary>
    Off,

    /// <summary>Only when the VMM asks (<see cref="MigrationSource.SwitchToPostCopy"/>); otherwise as <see cref="Off"/>.</summary>
    OnRequest,

    /// <summary>
    /// When the controller finds that pre-copy does not converge (<see cref="PreCopyOptions.SwitchToPostCopy"/>: the round
    /// budget spent or the dirty set stalled, with the expected downtime over the limit), or when the VMM asks.
    /// </summary>
    WhenNotConverging,
}
