// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration.Sessions;

/// <summary>
/// What a session reports while it runs, as QEMU's <c>query-migrate</c> does: sent so far, what remains, the rates,
/// the expected downtime and the phase. Sent at each phase change and each round; also readable at any time
/// (<see cref="MigrationSource.Progress"/>, <see cref="MigrationDestination.Progress"/>).
/// </summary>
/// <param name="Phase">The phase now.</param>
/// <param name="Rounds">Rounds sent (source) or applied (destination), the first pass included.</param>
/// <param name="PagesSent">Pages with data sent or applied.</param>
/// <param name="ZeroPages">Zero pages sent or applied (as counts, without data).</param>
/// <param name="BytesSent">Stream bytes sent or read.</param>
/// <param name="RemainingPages">Source: pages dirty at the last harvest, still to send. Destination: in post-copy, pages not here yet; 0 otherwise.</param>
/// <param name="DirtyRate">Source: pages per second dirtied in the last round; 0 until measured.</param>
/// <param name="Bandwidth">Source: bytes per second the destination applied in the last send; 0 until measured.</param>
/// <param name="ExpectedDowntime">Source: the remaining pages at the bandwidth; zero until measured.</param>
/// <param name="Elapsed">Since the session started.</param>
/// <remarks>Thread safety: immutable; read from any thread.</remarks>
public sealed record MigrationProgress(MigrationPhase Phase, int Rounds, ulong PagesSent, ulong ZeroPages, long BytesSent, ulong RemainingPages,
    double DirtyRate, double Bandwidth, TimeSpan ExpectedDowntime, TimeSpan Elapsed)
{
    /// <summary>The round just sent, with this event; <see langword="null"/> for a phase change.</summary>
    public MigrationRound? Round { get; init; }

    /// <summary>Destination, in post-copy: what was requested, installed and waited for so far; <see langword="null"/> otherwise.</summary>
    public PostCopy.PostCopyStatistics? PostCopy { get; init; }
}
