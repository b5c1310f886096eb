// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>One row of the migration's report.</summary>
internal sealed record RoundRow(string Phase, long Round, ulong DirtyPages, long BytesSent, TimeSpan Harvest, TimeSpan Send, IReadOnlyList<(string Tracker, TimeSpan Latency, ulong Pages)> Trackers)
{
    /// <summary>Tracker reads that failed or were late in this round, and rounds run again after a failure.</summary>
    public int Faults { get; init; }
}
