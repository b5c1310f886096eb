// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration.Sessions;

/// <summary>How the source goes from the pause to the end of the stream.</summary>
public enum SwitchOverPolicy
{
    /// <summary>At once: pause, final harvest, the rest, the device state, the end.</summary>
    Automatic,

    /// <summary>
    /// As QEMU's <c>pause-before-switchover</c>: after the pause and the rest of memory, before the device state, the
    /// source waits in <see cref="MigrationPhase.SwitchOverHeld"/> until <see cref="MigrationSource.ContinueSwitchOver"/>
    /// (the VMM hands over locks, disks or addresses meanwhile). Cancelling there resumes the source.
    /// </summary>
    PauseBeforeSwitchOver,
}
