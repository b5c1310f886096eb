// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;

namespace DirtyLog.Consumers;

/// <summary>One sample of a <see cref="DirtyRateMonitor"/>.</summary>
/// <param name="Interval">The time since the previous sample.</param>
/// <param name="PagesDirtied">Distinct pages published in the interval.</param>
/// <param name="PagesPerSecond"><paramref name="PagesDirtied"/> per second of the interval (0 for an empty interval).</param>
/// <param name="VcpuPagesPerSecond">Each vCPU's rate over the interval, by ring index; empty without a dirty-ring tracker.</param>
/// <remarks>Thread safety: immutable once made.</remarks>
public sealed record DirtyRateSample(TimeSpan Interval, ulong PagesDirtied, double PagesPerSecond, IReadOnlyList<double> VcpuPagesPerSecond);
