// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using DirtyLog.Harvesting;

namespace DirtyLog.Migration.Sessions;

/// <summary>
/// The sessions' instruments on the <c>DirtyLog</c> meter (<see cref="DirtyLogTelemetry"/>): counters of what was
/// sent, a downtime histogram, and gauges of every running session's progress (tag <c>dirtylog.migration.side</c>).
/// </summary>
/// <remarks>Thread safety: sessions register and leave from their own tasks; the gauges are read on the listener's thread.</remarks>
internal static class MigrationTelemetry
{
    private static readonly ConcurrentDictionary<object, byte> Running = new();
    private static readonly Counter<long> Pages = DirtyLogTelemetry.Meter.CreateCounter<long>(DirtyLogTelemetry.MigrationPagesSent, "{page}", "Guest pages a migration source sent.");
    private static readonly Counter<long> Bytes = DirtyLogTelemetry.Meter.CreateCounter<long>(DirtyLogTelemetry.MigrationBytesSent, "By", "Stream bytes a migration source sent.");
    private static readonly Counter<long> Rounds = DirtyLogTelemetry.Meter.CreateCounter<long>(DirtyLogTelemetry.MigrationRounds, "{round}", "Rounds a migration source sent.");
    private static readonly Counter<long> Ends = DirtyLogTelemetry.Meter.CreateCounter<long>(DirtyLogTelemetry.MigrationEnds, "{migration}", "Migrations ended, by side and end.");
    private static readonly Histogram<double> DowntimeSeconds = DirtyLogTelemetry.Meter.CreateHistogram<double>(DirtyLogTelemetry.MigrationDowntime, "s", "A migration's downtime, pause to resume.");
    private static readonly Counter<long> PostCopyRequested = DirtyLogTelemetry.Meter.CreateCounter<long>(DirtyLogTelemetry.PostCopyPagesRequested, "{page}", "Pages post-copy requested (destination) or answered (source).");
    private static readonly Counter<long> PostCopyPushed = DirtyLogTelemetry.Meter.CreateCounter<long>(DirtyLogTelemetry.PostCopyPagesPushed, "{page}", "Pages post-copy pushed (source) or received pushed (destination).");
    private static readonly Histogram<double> PostCopyLatency = DirtyLogTelemetry.Meter.CreateHistogram<double>(DirtyLogTelemetry.PostCopyRequestLatency, "s", "A post-copy request, fault to page installed.");
    private static readonly Histogram<double> PostCopyBlocked = DirtyLogTelemetry.Meter.CreateHistogram<double>(DirtyLogTelemetry.PostCopyBlockedTime, "s", "A post-copy's time its guest's threads waited on missing pages.");
    private static readonly Histogram<double> PostCopySeconds = DirtyLogTelemetry.Meter.CreateHistogram<double>(DirtyLogTelemetry.PostCopyDuration, "s", "A post-copy's duration, resume to last page.");

    private static readonly Counter<long> PostCopyPauseCount = DirtyLogTelemetry.Meter.CreateCounter<long>(DirtyLogTelemetry.PostCopyPauses, "{pause}", "Times post-copy lost a connection and waited to carry on.");

    static MigrationTelemetry()
    {
        DirtyLogTelemetry.Meter.CreateObservableGauge(DirtyLogTelemetry.MigrationRemainingPages, () => Observe(p => (long)p.RemainingPages), "{page}", "Pages a running migration still has to send.");
        DirtyLogTelemetry.Meter.CreateObservableGauge(DirtyLogTelemetry.MigrationDirtyRate, () => Observe(p => p.DirtyRate), "{page}/s", "A running migration's dirty rate.");
        DirtyLogTelemetry.Meter.CreateObservableGauge(DirtyLogTelemetry.MigrationBandwidth, () => Observe(p => p.Bandwidth), "By/s", "A running migration's bandwidth, end to end.");
        DirtyLogTelemetry.Meter.CreateObservableGauge(DirtyLogTelemetry.MigrationExpectedDowntime, () => Observe(p => p.ExpectedDowntime.TotalSeconds), "s", "A running migration's expected downtime.");
    }

    public static void SessionStarted(object session) => Running[session] = 0;

    public static void SessionEnded(object session) => Running.TryRemove(session, out _);

    public static void RoundSent(MigrationRound round)
    {
        Pages.Add((long)round.DirtyPages);
        Bytes.Add(round.BytesSent);
        Rounds.Add(1, new KeyValuePair<string, object?>("dirtylog.migration.phase", round.Phase.ToString()));
    }

    public static void Downtime(System.TimeSpan downtime) => DowntimeSeconds.Record(downtime.TotalSeconds);

    public static void PostCopyRequestInstalled(System.TimeSpan latency) => PostCopyLatency.Record(latency.TotalSeconds);

    public static void PostCopyPaused(string side) => PostCopyPauseCount.Add(1, new KeyValuePair<string, object?>("dirtylog.migration.side", side));

    public static void PostCopyEnded(PostCopyReport report, string side)
    {
        var tag = new KeyValuePair<string, object?>("dirtylog.migration.side", side);
        PostCopyRequested.Add((long)report.PagesRequested, tag);
        PostCopyPushed.Add((long)report.PagesPushed, tag);
        PostCopySeconds.Record(report.Duration.TotalSeconds, tag);
        if (side == "destination")
        {
            PostCopyBlocked.Record(report.BlockedTime.TotalSeconds);
        }
    }

    public static void Ended(MigrationOutcome outcome, string side) =>
        Ends.Add(1, new KeyValuePair<string, object?>("dirtylog.migration.side", side), new KeyValuePair<string, object?>("dirtylog.migration.end", outcome.End.ToString()));

    private static IEnumerable<Measurement<T>> Observe<T>(System.Func<MigrationProgress, T> value)
        where T : struct
    {
        foreach (object session in Running.Keys)
        {
            (MigrationProgress progress, string side) = session switch
            {
                MigrationSource source => (source.Progress, "source"),
                MigrationDestination destination => (destination.Progress, "destination"),
                _ => throw new UnreachableException(),
            };
            yield return new Measurement<T>(value(progress), new KeyValuePair<string, object?>("dirtylog.migration.side", side));
        }
    }
}
