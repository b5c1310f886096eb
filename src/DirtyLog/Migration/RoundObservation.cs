// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;

namespace DirtyLog.Migration;

/// <summary>What one pre-copy round saw and did, as the controller needs it.</summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
/// <param name="DirtyPages">Pages the round's harvest returned: what would be left to send if the guest stopped now.</param>
/// <param name="BytesSent">Bytes sent during the round.</param>
/// <param name="SendDuration">How long sending them took: the measured bandwidth.</param>
/// <param name="Interval">Time since the previous harvest: the window the dirty pages were written in.</param>
/// <param name="PagesPerTracker">Pages each tracker reported (optional), for per-writer dirty rates.</param>
public sealed record RoundObservation(ulong DirtyPages, ulong BytesSent, TimeSpan SendDuration, TimeSpan Interval, IReadOnlyDictionary<string, ulong>? PagesPerTracker = null)
{
    /// <summary>
    /// Each vCPU's dirty rate over the round, in pages per second, by vCPU index (from dirty rings:
    /// <c>VcpuDirtyRates.Sample()</c>); empty when unknown. Handed to the throttle, which can slow each vCPU by its own
    /// rate, as QEMU's dirty-limit does.
    /// </summary>
    public IReadOnlyList<double> VcpuDirtyRates { get; init; } = [];
}
