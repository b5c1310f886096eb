// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration;

/// <summary>The controller's answer after a round, with the figures behind it.</summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
/// <param name="Action">What to do.</param>
/// <param name="Reason">Why, in words (for logs and the migration report).</param>
/// <param name="Round">The round it answers, from 1.</param>
/// <param name="ExpectedDowntime">Bytes still dirty divided by the measured bandwidth.</param>
/// <param name="DirtyRate">Pages dirtied per second in the round.</param>
/// <param name="Bandwidth">Bytes per second sent, as measured so far.</param>
public sealed record PreCopyDecision(PreCopyAction Action, string Reason, int Round, TimeSpan ExpectedDowntime, double DirtyRate, double Bandwidth);
