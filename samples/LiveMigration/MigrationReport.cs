// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;
using Spectre.Console;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// What the sample prints: a line per round while it runs, then the rounds as an aligned table, the switch-over, the
/// downtime against its limit, and optionally a PNG chart and a CSV of the rounds. The same on the source of a
/// two-host migration as in one process (the stream's own summary is the destination's, printed only where it is).
/// </summary>
internal static class MigrationReport
{
    /// <summary>One round, as it completes.</summary>
    public static void Progress(RoundRow row)
    {
        double mbps = row.Send > TimeSpan.Zero ? row.BytesSent / row.Send.TotalSeconds / 1e6 : 0;
        Console.WriteLine(FormattableString.Invariant(
            $"round {row.Round,3} {row.Phase,-9} {row.DirtyPages,9:N0} dirty pages  {row.BytesSent / 1e6,8:F1} MB  {mbps,7:F0} MB/s  harvest {row.Harvest.TotalMilliseconds,6:F2} ms"));
    }

    /// <summary>The whole migration, once it is over.</summary>
    public static void Summary(IReadOnlyList<RoundRow> rows, PreCopyDecision decision, MigrationOutcome? stream, TimeSpan downtime, bool resumed, MigrationOptions options)
    {
        string[] trackers = rows.SelectMany(r => r.Trackers.Select(t => t.Tracker)).Distinct().ToArray();
        var table = new Table().Border(TableBorder.Rounded).Title("rounds");
        table.AddColumn(new TableColumn("round").RightAligned());
        table.AddColumn("phase");
        table.AddColumn(new TableColumn("dirty pages").RightAligned());
        table.AddColumn(new TableColumn("MB sent").RightAligned());
        table.AddColumn(new TableColumn("MB/s").RightAligned());
        foreach (string tracker in trackers)
        {
            table.AddColumn(new TableColumn($"{Markup.Escape(tracker)} ms").RightAligned());
        }

        foreach (RoundRow r in rows)
        {
            double mbps = r.Send > TimeSpan.Zero ? r.BytesSent / r.Send.TotalSeconds / 1e6 : 0;
            string[] cells =
            [
                r.Round.ToString(CultureInfo.InvariantCulture), r.Phase, r.DirtyPages.ToString("N0", CultureInfo.InvariantCulture),
                (r.BytesSent / 1e6).ToString("F1", CultureInfo.InvariantCulture), mbps.ToString("F0", CultureInfo.InvariantCulture),
                .. trackers.Select(t => r.Trackers.FirstOrDefault(x => x.Tracker == t) is { Tracker: not null } x ? x.Latency.TotalMilliseconds.ToString("F2", CultureInfo.InvariantCulture) : ""),
            ];
            table.AddRow(cells);
        }

        if (Console.IsOutputRedirected)
        {
            AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 160); // a log or a pipe: do not wrap the table at 80 columns
        }

        AnsiConsole.Write(table);
        Console.WriteLine($"switch-over: {decision.Reason}");
        string measured = resumed
            ? $"downtime (vCPU paused on the source to vCPU running on the destination): {downtime.TotalMilliseconds:F1} ms"
            : $"downtime (vCPU paused here to the destination's word that the guest runs there): {downtime.TotalMilliseconds:F1} ms";
        Console.WriteLine(downtime <= options.DowntimeLimit
            ? $"{measured}, within the limit of {options.DowntimeLimit.TotalMilliseconds:F0} ms"
            : $"{measured}: OVER the limit of {options.DowntimeLimit.TotalMilliseconds:F0} ms ({downtime / options.DowntimeLimit:F1}x); the estimate at the switch-over was {decision.ExpectedDowntime.TotalMilliseconds:F0} ms");
        Console.WriteLine($"tracker faults handled: {rows.Sum(r => r.Faults)}");
        if (stream is not null)
        {
            Console.WriteLine($"stream: {stream.Rounds} rounds, {stream.Pages:N0} pages with data, {stream.ZeroPages:N0} zero pages, {stream.Bytes / 1e6:F1} MB; state: {(stream.StateSections.Count == 0 ? "none" : string.Join(", ", stream.StateSections))}; memory digest (after the switch-over, outside the downtime) {(stream.MemoryVerified ? "matched" : stream.PostCopy is null ? "not verified" : "not sent (post-copy: the guest may run there before the last page)")}");
        }

        if (options.ChartPath is { } chart)
        {
            RoundChart.Write(chart, rows, trackers);
            Console.WriteLine($"chart of the rounds: {chart}");
        }

        if (options.CsvPath is { } csv)
        {
            File.WriteAllLines(csv,
            [
                $"round,phase,dirty_pages,bytes_sent,send_ms{string.Concat(trackers.Select(t => $",{t}_ms"))}",
                .. rows.Select(r => FormattableString.Invariant($"{r.Round},{r.Phase},{r.DirtyPages},{r.BytesSent},{r.Send.TotalMilliseconds:F3}") +
                    string.Concat(trackers.Select(t => r.Trackers.FirstOrDefault(x => x.Tracker == t) is { Tracker: not null } x ? FormattableString.Invariant($",{x.Latency.TotalMilliseconds:F3}") : ","))),
            ]);
            Console.WriteLine($"rounds as CSV: {csv}");
        }
    }
}
