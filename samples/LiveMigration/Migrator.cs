// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.IO.Pipelines;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Migration;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>The source side: a full first pass, pre-copy rounds under the controller, then stop-copy.</summary>
internal static class Migrator
{
    /// <summary>Migrates the running source VM over <paramref name="connection"/>.</summary>
    /// <returns>The rounds, and when the guest was paused.</returns>
    public static async Task<(List<RoundRow> Rounds, long PausedAt, PreCopyDecision Decision)> SendAsync(SourceVm vm, Stream connection, MigrationOptions options, Action<RoundRow> progress, CancellationToken cancellationToken)
    {
        PipeWriter output = PipeWriter.Create(connection);
        var writer = new PageStreamWriter(output, vm.Memory);
        var controller = new PreCopyController(new PreCopyOptions { DowntimeLimit = options.DowntimeLimit });
        var rows = new List<RoundRow>();
        var clock = Stopwatch.StartNew();

        // The first pass sends everything; the trackers already log what changes meanwhile.
        TimeSpan sendStart = clock.Elapsed;
        long bytes = await writer.WriteRoundAsync([new DirtyRun(0, vm.Pages)], cancellationToken).ConfigureAwait(false);
        rows.Add(new RoundRow("full copy", 1, vm.Pages, bytes, TimeSpan.Zero, clock.Elapsed - sendStart, []));
        progress(rows[^1]);

        TimeSpan lastHarvest = clock.Elapsed;
        PreCopyDecision decision;
        do
        {
            (RoundRow row, ulong pages, IReadOnlyDictionary<string, ulong> perTracker) = await RoundAsync(vm, writer, "pre-copy", rows.Count + 1, clock, null, cancellationToken).ConfigureAwait(false);
            rows.Add(row);
            progress(row);
            decision = controller.Observe(new RoundObservation(pages, (ulong)row.BytesSent, row.Send, clock.Elapsed - lastHarvest, perTracker));
            lastHarvest = clock.Elapsed;
        }
        while (decision.Action is PreCopyAction.Continue or PreCopyAction.Throttle);

        if (decision.Action == PreCopyAction.Abort)
        {
            return (rows, 0, decision);
        }

        // Stop-copy: pause the vCPU and the devices, the final harvest (with a deadline), the rest, the end marker.
        long pausedAt = Stopwatch.GetTimestamp();
        vm.Pause();
        (RoundRow last, _, _) = await RoundAsync(vm, writer, "stop-copy", rows.Count + 1, clock, TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
        rows.Add(last);
        progress(last);
        await writer.WriteEndAsync(includeMemoryDigest: true, cancellationToken).ConfigureAwait(false);
        await output.CompleteAsync().ConfigureAwait(false);
        return (rows, pausedAt, decision);
    }

    private static async Task<(RoundRow Row, ulong Pages, IReadOnlyDictionary<string, ulong> PerTracker)> RoundAsync(SourceVm vm, PageStreamWriter writer, string phase, int number, Stopwatch clock, TimeSpan? deadline, CancellationToken cancellationToken)
    {
        HarvestRound? attempt = null;
        int faults = 0;
        for (int tries = 1; attempt is null; tries++)
        {
            try
            {
                attempt = vm.Harvester.RunRound(deadline, cancellationToken);
            }
            catch (HarvestException e) when (tries < 5)
            {
                // The failed tracker was restarted and its coverage marked: nothing is lost by running the round again.
                Console.WriteLine($"round {number} failed ({e.Message}); running it again");
                faults++;
            }
        }

        using HarvestRound round = attempt;
        DirtyRun[] runs = round.Runs.ToArray();
        TimeSpan start = clock.Elapsed;
        long bytes = await writer.WriteRoundAsync(runs, cancellationToken).ConfigureAwait(false);
        TimeSpan send = clock.Elapsed - start;
        round.Commit(); // sent: only now is the round's dirty set gone (an exception above put it back)
        var trackers = round.Trackers.Select(t => (t.Tracker, t.Latency, t.PagesReported)).ToList();
        faults += round.Trackers.Count(t => t.Outcome != TrackerRoundOutcome.Read);
        return (new RoundRow(phase, number, round.Pages, bytes, round.Duration, send, trackers) { Faults = faults }, round.Pages, round.Trackers.ToDictionary(t => t.Tracker, t => t.PagesReported));
    }
}
