// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Harvesting;

namespace DirtyLog.Migration.Sessions;

/// <summary>One round a source session sent: the first pass, a pre-copy round, or stop-copy.</summary>
/// <param name="Number">The round, from 1 (the first pass).</param>
/// <param name="Phase">The phase it belonged to.</param>
/// <param name="DirtyPages">Pages the round carried.</param>
/// <param name="BytesSent">Stream bytes it took.</param>
/// <param name="Harvest">How long its harvest took (zero for the first pass).</param>
/// <param name="Send">From its first byte to the destination's acknowledgement that it applied it (stop-copy: to the end of its send).</param>
/// <param name="Retries">Harvests of this round run again after a tracker failed it.</param>
/// <param name="Trackers">Each tracker's part of the harvest (empty for the first pass).</param>
/// <remarks>Thread safety: immutable.</remarks>
public sealed record MigrationRound(int Number, MigrationPhase Phase, ulong DirtyPages, long BytesSent, TimeSpan Harvest, TimeSpan Send, int Retries, IReadOnlyList<TrackerRoundReport> Trackers)
{
    /// <summary>
    /// Tracker reads that failed or were late in this round's harvest, and in a harvest put back just before it (the
    /// pre-copy round a switch-over did not send: its pages, and its faults, travel with stop-copy), retries included.
    /// </summary>
    public int TrackerFaults { get; init; }
}
