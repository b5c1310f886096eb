// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;

namespace DirtyLog.Migration;

/// <summary>What the throttle callback is told when the dirty set stopped shrinking.</summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
/// <param name="Round">The round, from 1.</param>
/// <param name="DirtyRate">Pages dirtied per second, all writers.</param>
/// <param name="Bandwidth">Bytes per second sent.</param>
/// <param name="TrackerRates">Pages per second per tracker, when rounds reported them: the writer to slow down first.</param>
public sealed record ThrottleRequest(int Round, double DirtyRate, double Bandwidth, IReadOnlyDictionary<string, double> TrackerRates);
