// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Harvesting;

/// <summary>One tracker's part in a harvest round.</summary>
/// <remarks>Thread safety: an immutable snapshot; safe to share between threads.</remarks>
/// <param name="Tracker">The tracker's name.</param>
/// <param name="Outcome">Whether it was read, failed, or was late.</param>
/// <param name="Latency">How long its read took (to the deadline when late).</param>
/// <param name="PagesReported">Guest pages it reported.</param>
/// <param name="ExclusivePages">
/// Pages no other tracker reported in this round: the writer that keeps the guest from converging shows here.
/// Zero when attribution is off.
/// </param>
/// <param name="Fault">What went wrong, when it did.</param>
public sealed record TrackerRoundReport(string Tracker, TrackerRoundOutcome Outcome, TimeSpan Latency, ulong PagesReported, ulong ExclusivePages, Exception? Fault);
