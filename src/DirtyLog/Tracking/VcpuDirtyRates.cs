// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking;

/// <summary>
/// Each vCPU's dirty rate, from a dirty-ring tracker's per-vCPU entry counts: the pages each vCPU dirtied per second
/// between two samples. What QEMU's dirty-limit throttles per vCPU, and what a dirty-rate monitor reports.
/// </summary>
/// <remarks>
/// Thread safety: <see cref="Sample"/> is serialised by a lock (concurrent samples each get the interval since the
/// one before them); the tracker's counters may move meanwhile. A vCPU whose ring appeared after the previous sample
/// counts from zero.
/// </remarks>
public sealed class VcpuDirtyRates
{
    private readonly KvmDirtyRingTracker _tracker;
    private readonly TimeProvider _time;
    private readonly object _gate = new();
    private long[] _last;
    private long _lastTimestamp;

    /// <summary>Starts measuring now.</summary>
    /// <param name="tracker">The dirty-ring tracker whose rings are the vCPUs'.</param>
    /// <param name="time">The clock; the system's by default.</param>
    /// <exception cref="ArgumentNullException"><paramref name="tracker"/> is null.</exception>
    public VcpuDirtyRates(KvmDirtyRingTracker tracker, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(tracker);
        _tracker = tracker;
        _time = time ?? TimeProvider.System;
        _last = tracker.EntriesPerVcpu();
        _lastTimestamp = _time.GetTimestamp();
    }

    /// <summary>The rates since the previous sample (or since creation), in pages per second, by vCPU (ring) index.</summary>
    /// <returns>One rate per vCPU seen so far; all zero when no time has passed.</returns>
    /// <remarks>
    /// Pages are counted when the rings are harvested (a read or a reap), so the interval between samples should span
    /// several reaps: a sample taken just before a reap misses the entries still in the rings.
    /// </remarks>
    public double[] Sample()
    {
        lock (_gate)
        {
            long now = _time.GetTimestamp();
            long[] counts = _tracker.EntriesPerVcpu();
            double seconds = _time.GetElapsedTime(_lastTimestamp, now).TotalSeconds;
            var rates = new double[counts.Length];
            for (int i = 0; i < counts.Length; i++)
            {
                long before = i < _last.Length ? _last[i] : 0;
                rates[i] = seconds > 0 ? (counts[i] - before) / seconds : 0;
            }

            _last = counts;
            _lastTimestamp = now;
            return rates;
        }
    }
}
