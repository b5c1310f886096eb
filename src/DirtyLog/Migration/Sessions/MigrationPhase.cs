// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration.Sessions;

/// <summary>Where a migration session is, on either side; an outcome and an error name the phase they ended in.</summary>
public enum MigrationPhase
{
    /// <summary>The handshake: the source's stream header, the destination's acceptance (or refusal).</summary>
    Handshake,

    /// <summary>The first full pass over guest memory, while the guest runs and tracking logs what changes.</summary>
    FirstPass,

    /// <summary>Pre-copy rounds of what was dirtied since the last one, under the controller.</summary>
    PreCopy,

    /// <summary>
    /// The source paused the guest and devices, ran the final harvest and sends the rest and the device state; on the
    /// destination, the last of the stream arrives.
    /// </summary>
    StopCopy,

    /// <summary>The source is paused and holds the switch-over until the VMM says go (<see cref="SwitchOverPolicy.PauseBeforeSwitchOver"/>).</summary>
    SwitchOverHeld,

    /// <summary>The end was sent; the source waits for the destination to say it resumed the guest or refused.</summary>
    AwaitingDestination,

    /// <summary>The destination loads the state sections and resumes the guest.</summary>
    Resuming,

    /// <summary>After the switch-over: the source's memory digest against the pages the destination applied.</summary>
    Verifying,

    /// <summary>Over (see the outcome's <see cref="MigrationOutcome.End"/>).</summary>
    Ended,

    /// <summary>
    /// Post-copy: the guest runs at the destination, whose threads' touches of pages it lacks are requested from the
    /// source, while the source pushes the rest.
    /// </summary>
    PostCopy,

    /// <summary>
    /// Post-copy lost a connection: the destination's guest waits on its missing pages, the source keeps its memory,
    /// and both wait for new connections to carry on (<see cref="MigrationSourceOptions.PostCopyRecoveryTimeout"/>).
    /// </summary>
    PostCopyPaused,
}
