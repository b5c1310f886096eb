// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Bitmaps;
using DirtyLog.Tracking;

namespace DirtyLog.Consumers;

/// <summary>
/// A dirty-rate monitor (what QEMU's <c>calc-dirty-rate</c> reports), as one more consumer of a
/// <see cref="DirtyConsumerSet"/>: it measures the distinct pages published between two samples, per second, from the
/// rounds the migration or the snapshots read anyway, without reading the kernel again and without taking their pages;
/// with a dirty-ring tracker, each vCPU's own rate too (<see cref="VcpuDirtyRates"/>).
/// </summary>
/// <remarks>
/// <para>The VM-wide rate counts each page once per interval, however often it was written: the working set the guest
/// dirties, which is what a round must send. The per-vCPU rates count ring entries: a page dirtied again after a
/// harvest counts again, and a page two vCPUs dirtied counts for both.</para>
/// <para>Thread safety: <see cref="Sample"/> is serialised by a lock (concurrent samples each get the interval since
/// the one before them); publications may race it (a page published during a sample counts in this sample or the
/// next, never in both and never in neither). <see cref="Dispose"/> must not race <see cref="Sample"/>.</para>
/// </remarks>
public sealed class DirtyRateMonitor : IDisposable
{
    private readonly DirtyConsumer _consumer;
    private readonly VcpuDirtyRates? _vcpuRates;
    private readonly TimeProvider _time;
    private readonly object _gate = new();
    private long _lastTimestamp;

    /// <summary>Registers the monitor's consumer and starts its first interval now.</summary>
    /// <param name="consumers">The set the rounds are published to.</param>
    /// <param name="vcpuRates">
    /// Each vCPU's rate from a dirty-ring tracker, or <see langword="null"/> (dirty bitmap, no rings). The monitor
    /// samples it (now, and at each <see cref="Sample"/>): give it one of its own, since another caller's samples would
    /// cut the monitor's intervals short (the pre-copy controller's, for instance).
    /// </param>
    /// <param name="time">The clock; the system's by default.</param>
    /// <param name="name">The consumer's name.</param>
    /// <exception cref="ArgumentNullException"><paramref name="consumers"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty or registered already (give a second monitor on the same set its own name).</exception>
    /// <exception cref="ObjectDisposedException">The set was disposed.</exception>
    public DirtyRateMonitor(DirtyConsumerSet consumers, VcpuDirtyRates? vcpuRates = null, TimeProvider? time = null, string name = "dirty-rate")
    {
        ArgumentNullException.ThrowIfNull(consumers);
        _consumer = consumers.Register(name);
        _vcpuRates = vcpuRates;
        _time = time ?? TimeProvider.System;
        _lastTimestamp = _time.GetTimestamp();
        _vcpuRates?.Sample(); // both intervals start now
    }

    /// <summary>The rates since the previous sample (or since creation); its interval ends now.</summary>
    /// <returns>The sample.</returns>
    /// <exception cref="ObjectDisposedException">The monitor or its set was disposed.</exception>
    public DirtyRateSample Sample()
    {
        lock (_gate)
        {
            var counter = new PageCounter();
            _consumer.TakeChanges(ref counter);
            long now = _time.GetTimestamp();
            TimeSpan interval = _time.GetElapsedTime(_lastTimestamp, now);
            _lastTimestamp = now;
            double[] vcpus = _vcpuRates?.Sample() ?? [];
            return new DirtyRateSample(interval, counter.Pages, interval > TimeSpan.Zero ? counter.Pages / interval.TotalSeconds : 0, vcpus);
        }
    }

    /// <summary>Leaves the set and frees the consumer's bitmap.</summary>
    public void Dispose() => _consumer.Dispose();

    /// <summary>Counts the pages of the runs, keeping none.</summary>
    private struct PageCounter : IDirtyRunSink
    {
        public ulong Pages { get; private set; }

        public bool TryAccept(DirtyRun run)
        {
            Pages += run.PageCount;
            return true;
        }
    }
}
