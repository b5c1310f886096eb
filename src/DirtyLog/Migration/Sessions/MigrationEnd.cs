// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration.Sessions;

/// <summary>Where the guest is when a migration session ends: on exactly one side, or paused with the answer unknown.</summary>
public enum MigrationEnd
{
    /// <summary>
    /// The guest runs on the destination. The source saw the destination's word that it resumed the guest (the
    /// source's guest stays paused for good); the destination resumed it after the whole image and all state arrived
    /// and checked.
    /// </summary>
    RunningOnDestination,

    /// <summary>
    /// The guest runs on the source: the migration failed or was cancelled before the source paused, or after the pause
    /// but before the end was sent (nothing could resume it elsewhere), or the destination refused explicitly. The
    /// source resumed its guest where it had paused it. On the destination: nothing was resumed there.
    /// </summary>
    RunningOnSource,

    /// <summary>
    /// Source only: the end was sent and no answer came (the connection died between the end and the answer, or the
    /// answer timed out). The destination may have resumed the guest, so the source keeps it paused: the VMM or its
    /// management must find out (ask the destination) and then resume one side, never both.
    /// </summary>
    Unknown,
}
