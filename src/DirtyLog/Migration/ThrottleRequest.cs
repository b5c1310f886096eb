// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;

namespace DirtyLog.Migration;

/// <summary>What the throttle callback is told when the dirty set stopped shrinking.</summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
/// <param name="Round">The round, from 1.</param>
/// <param name="DirtyRate">Pages dirtied per second, all writers.</param>
/// <param name="Bandwidth">Bytes per second sent.</param>
/// <param name="TrackerRates">Pages per second per tracker, when rounds reported them: the writer to slow down first.</param>
public sealed record ThrottleRequest(int Round, double DirtyRate, double Bandwidth, IReadOnlyDictionary<string, double> TrackerRates)
{
    /// <summary>
    /// The last round's dirty rate of each vCPU, pages per second by vCPU index (<see cref="RoundObservation.VcpuDirtyRates"/>),
    /// empty when unknown: throttle the vCPUs that dirty most, each by its own rate, rather than the whole guest.
    /// </summary>
    public IReadOnlyList<double> VcpuDirtyRates { get; init; } = [];
}
