// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;

namespace DirtyLog.Migration.Sessions;

/// <summary>How a migration session ended, on its side. Every end is an outcome: <c>RunAsync</c> does not throw for a failed migration.</summary>
/// <param name="End">Where the guest is: on one side, or (source only) unknown with the guest paused.</param>
/// <param name="Phase">The phase the session ended in (a failure's phase; <see cref="MigrationPhase.Ended"/> after a whole migration).</param>
/// <param name="Error">Why it failed or was refused, naming the phase; <see langword="null"/> for a migration that completed.</param>
/// <remarks>Thread safety: immutable.</remarks>
public sealed record MigrationOutcome(MigrationEnd End, MigrationPhase Phase, MigrationException? Error)
{
    /// <summary>Rounds sent or applied, the first pass and stop-copy included.</summary>
    public int Rounds { get; init; }

    /// <summary>The source's rounds, each as it was sent (empty on the destination).</summary>
    public IReadOnlyList<MigrationRound> RoundReports { get; init; } = [];

    /// <summary>
    /// The guest's downtime as this side saw it: on the source, from the pause to the destination's word that it
    /// resumed; on the destination, from the end of the stream to the resume's return. Zero when nothing paused.
    /// </summary>
    public TimeSpan Downtime { get; init; }

    /// <summary>From the session's start to its end.</summary>
    public TimeSpan TotalTime { get; init; }

    /// <summary>Stream bytes sent (source) or read (destination).</summary>
    public long Bytes { get; init; }

    /// <summary>Pages sent or applied with their data.</summary>
    public ulong Pages { get; init; }

    /// <summary>Pages sent or applied as zero pages.</summary>
    public ulong ZeroPages { get; init; }

    /// <summary>Source: the controller's last decision, the one that ended pre-copy (or aborted); <see langword="null"/> before one.</summary>
    public PreCopyDecision? Decision { get; init; }

    /// <summary>
    /// Destination: whether every page applied matched the source's memory digest, sent after the switch-over.
    /// <see langword="false"/> when no digest came or it was not waited for; a mismatch is also an <see cref="Error"/>.
    /// </summary>
    public bool MemoryVerified { get; init; }

    /// <summary>The state sections that arrived (destination) or were sent (source), by name.</summary>
    public IReadOnlyList<string> StateSections { get; init; } = [];

    /// <summary>The data connections the pages went over besides the control connection (0: the control connection carried them).</summary>
    public int DataConnections { get; init; }

    /// <summary>What post-copy did, when the migration switched to it; <see langword="null"/> for one that ended in stop-copy.</summary>
    public PostCopyReport? PostCopy { get; init; }
}
