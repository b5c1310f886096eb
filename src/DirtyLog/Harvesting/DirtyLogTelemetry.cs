// Licensed under the MIT License. See LICENSE in the repository root.

using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace DirtyLog.Harvesting;

/// <summary>
/// The names DirtyLog reports under: one <see cref="Meter"/> and one <see cref="ActivitySource"/>, both named
/// <c>DirtyLog</c>. Listen with <c>MeterListener</c>, OpenTelemetry or <c>dotnet-counters</c>.
/// </summary>
/// <remarks>
/// <para>Every tracker instrument carries a <c>dirtylog.tracker</c> tag with the tracker's name.</para>
/// <para>Thread safety: the meter and activity source are shared, thread-safe objects; instruments are recorded from the harvester's worker threads.</para>
/// </remarks>
public static class DirtyLogTelemetry
{
    /// <summary>The meter's and the activity source's name.</summary>
    public const string Name = "DirtyLog";

    /// <summary>Histogram, seconds: how long one tracker's read took in a round.</summary>
    public const string TrackerReadDuration = "dirtylog.tracker.read.duration";

    /// <summary>Counter, pages: guest pages a tracker reported.</summary>
    public const string TrackerDirtyPages = "dirtylog.tracker.dirty_pages";

    /// <summary>Counter: tracker reads that failed or were late (tag <c>dirtylog.outcome</c>: <c>faulted</c> or <c>late</c>).</summary>
    public const string TrackerFaults = "dirtylog.tracker.faults";

    /// <summary>Counter: harvest rounds completed.</summary>
    public const string Rounds = "dirtylog.rounds";

    /// <summary>Histogram, seconds: a whole round, from dispatch to runs.</summary>
    public const string RoundDuration = "dirtylog.round.duration";

    /// <summary>Counter, pages: guest pages a round returned.</summary>
    public const string RoundDirtyPages = "dirtylog.round.dirty_pages";

    /// <summary>The span of one round (tags: <c>dirtylog.round</c>, <c>dirtylog.pages</c>, <c>dirtylog.trackers</c>).</summary>
    public const string RoundActivity = "dirtylog.round";

    /// <summary>Counter, pages: guest pages a migration source sent (data and zero pages).</summary>
    public const string MigrationPagesSent = "dirtylog.migration.pages_sent";

    /// <summary>Counter, bytes: stream bytes a migration source sent.</summary>
    public const string MigrationBytesSent = "dirtylog.migration.bytes_sent";

    /// <summary>Counter: rounds a migration source sent (tag <c>dirtylog.migration.phase</c>).</summary>
    public const string MigrationRounds = "dirtylog.migration.rounds";

    /// <summary>Counter: migrations ended (tags <c>dirtylog.migration.side</c> and <c>dirtylog.migration.end</c>).</summary>
    public const string MigrationEnds = "dirtylog.migration.ends";

    /// <summary>Histogram, seconds: a completed migration's downtime, from the source's pause to the destination's resume.</summary>
    public const string MigrationDowntime = "dirtylog.migration.downtime";

    /// <summary>Gauge, pages: what each running migration still has to send (tag <c>dirtylog.migration.side</c>).</summary>
    public const string MigrationRemainingPages = "dirtylog.migration.remaining_pages";

    /// <summary>Gauge, pages per second: each running migration's dirty rate.</summary>
    public const string MigrationDirtyRate = "dirtylog.migration.dirty_rate";

    /// <summary>Gauge, bytes per second: each running migration's bandwidth, end to end.</summary>
    public const string MigrationBandwidth = "dirtylog.migration.bandwidth";

    /// <summary>Gauge, seconds: each running migration's expected downtime.</summary>
    public const string MigrationExpectedDowntime = "dirtylog.migration.expected_downtime";

    /// <summary>Counter, pages: pages a post-copy destination asked for, or a source answered (tag <c>dirtylog.migration.side</c>).</summary>
    public const string PostCopyPagesRequested = "dirtylog.migration.postcopy.pages_requested";

    /// <summary>Counter, pages: pages a post-copy source pushed, or a destination received pushed (tag <c>dirtylog.migration.side</c>).</summary>
    public const string PostCopyPagesPushed = "dirtylog.migration.postcopy.pages_pushed";

    /// <summary>Histogram, seconds: each post-copy request, from the fault that asked to the page installed.</summary>
    public const string PostCopyRequestLatency = "dirtylog.migration.postcopy.request_latency";

    /// <summary>Histogram, seconds: a post-copy's time its guest's threads spent waiting for missing pages (QEMU's postcopy-blocktime).</summary>
    public const string PostCopyBlockedTime = "dirtylog.migration.postcopy.blocked_time";

    /// <summary>Histogram, seconds: a post-copy's duration, from the resume at the destination to the last page (tag <c>dirtylog.migration.side</c>).</summary>
    public const string PostCopyDuration = "dirtylog.migration.postcopy.duration";

    /// <summary>Counter: times post-copy lost a connection and paused, waiting to carry on over new ones (tag <c>dirtylog.migration.side</c>).</summary>
    public const string PostCopyPauses = "dirtylog.migration.postcopy.pauses";

    internal static readonly ActivitySource Source = new(Name);
    internal static readonly Meter Meter = new(Name);
    internal static readonly Histogram<double> ReadDuration = Meter.CreateHistogram<double>(TrackerReadDuration, "s", "Duration of one tracker's read in a harvest round.");
    internal static readonly Counter<long> DirtyPages = Meter.CreateCounter<long>(TrackerDirtyPages, "{page}", "Guest pages reported dirty by a tracker.");
    internal static readonly Counter<long> Faults = Meter.CreateCounter<long>(TrackerFaults, "{fault}", "Tracker reads that failed or missed the deadline.");
    internal static readonly Counter<long> RoundCount = Meter.CreateCounter<long>(Rounds, "{round}", "Harvest rounds completed.");
    internal static readonly Histogram<double> RoundSeconds = Meter.CreateHistogram<double>(RoundDuration, "s", "Duration of a harvest round.");
    internal static readonly Counter<long> RoundPages = Meter.CreateCounter<long>(RoundDirtyPages, "{page}", "Guest pages returned by harvest rounds.");
}
