// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipelines;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Consumers;
using DirtyLog.Harvesting;
using DirtyLog.Migration;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>What the source saw of a migration.</summary>
/// <param name="Rounds">Each round, with its end-to-end send time (until the destination acknowledged it).</param>
/// <param name="Decision">The controller's last decision.</param>
/// <param name="Downtime">From the pause to the destination's acknowledgement of the end: what the guest was stopped for.</param>
/// <param name="Digest">The source memory's digest, sent after the switch-over.</param>
/// <param name="PausedAt">When the source paused (a <see cref="System.Diagnostics.Stopwatch"/> timestamp), 0 if it did not.</param>
internal sealed record MigrationOutcome(List<RoundRow> Rounds, PreCopyDecision Decision, TimeSpan Downtime, uint Digest, long PausedAt);

/// <summary>
/// The source side: a full first pass, pre-copy rounds under the controller, then stop-copy. Every round is timed end to
/// end, from its first byte to the destination's acknowledgement that it applied it, so the controller's bandwidth is
/// the destination's, not the socket buffer's.
/// </summary>
internal static class Migrator
{
    /// <summary>Migrates the running source VM over <paramref name="connection"/> (both directions: pages out, acknowledgements in).</summary>
    /// <param name="vm">The source.</param>
    /// <param name="connection">The connection to the destination.</param>
    /// <param name="options">The migration's options.</param>
    /// <param name="progress">Called with each round sent.</param>
    /// <param name="cancellationToken">Cancels the migration.</param>
    /// <param name="consumers">Other consumers of the same trackers (a snapshot chain): each round sent is published to them first.</param>
    public static async Task<MigrationOutcome> SendAsync(SourceVm vm, Stream connection, MigrationOptions options, Action<RoundRow> progress, CancellationToken cancellationToken, DirtyConsumerSet? consumers = null)
    {
        PipeWriter output = PipeWriter.Create(connection, new StreamPipeWriterOptions(minimumBufferSize: PageStreamWriter.RecommendedBufferSize, leaveOpen: true));
        var acks = new PageStreamAcknowledgements(PipeReader.Create(connection, new StreamPipeReaderOptions(leaveOpen: true)));
        Task ackLoop = acks.RunAsync(cancellationToken);
        var writer = new PageStreamWriter(output, vm.Memory);
        // Past the first fit, rounds go on while each halves the dirty set (QEMU switches at the first fit).
        var controller = new PreCopyController(new PreCopyOptions { DowntimeLimit = options.DowntimeLimit, KeepCopyingWhileShrinkingTo = options.KeepCopyingWhileShrinkingTo });
        var rows = new List<RoundRow>();

        // Tracking starts with the migration; the first pass sends everything, the trackers log what changes meanwhile.
        vm.BeginTracking();
        controller.Observe(new RoundObservation(vm.Pages, 0, TimeSpan.Zero, TimeSpan.Zero)); // every page dirty, no bandwidth yet: copy
        TimeSpan sendStart = acks.Now;
        long bytes = await writer.WriteRoundAsync([new DirtyRun(0, vm.Pages)], cancellationToken).ConfigureAwait(false);
        TimeSpan applied = await acks.WaitForRoundAsync(writer.Rounds, cancellationToken).ConfigureAwait(false);
        rows.Add(new RoundRow("full copy", 1, vm.Pages, bytes, TimeSpan.Zero, applied - sendStart, []));
        progress(rows[^1]);

        // Each round is decided on the dirty set just harvested, as QEMU decides on a fresh sync, and the bandwidth of
        // the last send: the pages a switch-over would leave are what is dirty now, not what the last round carried.
        TimeSpan lastHarvest = acks.Now;
        (ulong Bytes, TimeSpan Duration) lastSend = ((ulong)bytes, applied - sendStart);
        PreCopyDecision decision;
        int unsentFaults = 0; // faults of the round a switch-over put back: reported with the stop-copy round
        while (true)
        {
            (HarvestRound round, int faults) = Harvest(vm, rows.Count + 1, final: false, null, cancellationToken);
            using (round)
            {
                decision = controller.Observe(new RoundObservation(round.Pages, lastSend.Bytes, lastSend.Duration, acks.Now - lastHarvest,
                    round.Trackers.ToDictionary(t => t.Tracker, t => t.PagesReported)));
                lastHarvest = acks.Now;
                if (decision.Action is not (PreCopyAction.Continue or PreCopyAction.Throttle) || vm.RingWedged)
                {
                    // Not sent: its pages go back to the shared bitmap (manual protect left them logged in KVM too),
                    // so the final harvest after the pause reports them with whatever was written since.
                    round.PutBack();
                    unsentFaults = faults + round.Trackers.Count(t => t.Outcome != TrackerRoundOutcome.Read);
                    break;
                }

                RoundRow row = await SendAsync(round, faults, writer, acks, "pre-copy", rows.Count + 1, consumers, cancellationToken).ConfigureAwait(false);
                rows.Add(row);
                progress(row);
                lastSend = ((ulong)row.BytesSent, row.Send);
            }
        }

        if (vm.RingWedged)
        {
            // The vCPU stopped in its run loop and every slot is marked dirty: stop-copy sends the rest, nothing is lost.
            Console.WriteLine("the vCPU's dirty ring wedged (this host's rings can overshoot): stop-copy now");
        }

        if (decision.Action == PreCopyAction.Abort)
        {
            await output.CompleteAsync().ConfigureAwait(false);
            return new MigrationOutcome(rows, decision, TimeSpan.Zero, 0, 0);
        }

        // Stop-copy: pause the vCPU and the devices, the final harvest (with a deadline), the rest, the vCPU's state,
        // the end; the downtime lasts until the destination acknowledges the end.
        TimeSpan pausedAt = acks.Now;
        long pausedTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
        vm.Pause();
        (HarvestRound finalRound, int finalFaults) = Harvest(vm, rows.Count + 1, final: true, TimeSpan.FromSeconds(2), cancellationToken);
        RoundRow last;
        using (finalRound)
        {
            last = await SendAsync(finalRound, finalFaults + unsentFaults, writer, acks, "stop-copy", rows.Count + 1, consumers, cancellationToken).ConfigureAwait(false);
        }

        rows.Add(last);
        foreach ((string name, byte[] state) in vm.SaveState())
        {
            await writer.WriteStateAsync(name, state, cancellationToken).ConfigureAwait(false);
        }

        await writer.WriteEndAsync(cancellationToken).ConfigureAwait(false);
        TimeSpan downtime = await acks.WaitForEndAsync(cancellationToken).ConfigureAwait(false) - pausedAt;
        progress(last); // printing is not part of the downtime

        // After the switch-over the source is stopped for good: proving the copy costs no downtime.
        uint digest = await writer.WriteMemoryDigestAsync(cancellationToken).ConfigureAwait(false);
        await output.CompleteAsync().ConfigureAwait(false);
        await ackLoop.ConfigureAwait(false);
        return new MigrationOutcome(rows, decision, downtime, digest, pausedTimestamp);
    }

    /// <summary>One harvest of every tracker, run again (up to five times) when a tracker's failure failed the round.</summary>
    private static (HarvestRound Round, int Faults) Harvest(SourceVm vm, int number, bool final, TimeSpan? deadline, CancellationToken cancellationToken)
    {
        for (int tries = 1; ; tries++)
        {
            try
            {
                HarvestRound round = final
                    ? vm.Harvester.RunFinalRound(deadline, cancellationToken) // no re-protection for a paused guest
                    : vm.Harvester.RunRound(deadline, cancellationToken);
                return (round, tries - 1);
            }
            catch (HarvestException e) when (tries < 5)
            {
                // The failed tracker was restarted and its coverage marked: nothing is lost by running the round again.
                Console.WriteLine($"round {number} failed ({e.Message}); running it again");
            }
        }
    }

    /// <summary>Sends a harvested round and commits it once sent (and, before stop-copy, once the destination applied it).</summary>
    private static async Task<RoundRow> SendAsync(HarvestRound round, int faults, PageStreamWriter writer, PageStreamAcknowledgements acks, string phase, int number,
        DirtyConsumerSet? consumers, CancellationToken cancellationToken)
    {
        // The other consumers get the round before it is sent: the send re-protects its pages chunk by chunk, and the
        // round leaves the shared bitmap when committed. A round put back is not published; its pages come again.
        consumers?.Publish(round.Runs);
        TimeSpan start = acks.Now;
        long bytes = await writer.WriteRoundAsync(round, cancellationToken).ConfigureAwait(false); // the round's runs, not a copy

        // Pre-copy rounds are timed end to end for the controller; stop-copy waits only once, for the end, not per round.
        TimeSpan applied = phase == "stop-copy" ? acks.Now : await acks.WaitForRoundAsync(writer.Rounds, cancellationToken).ConfigureAwait(false);
        round.Commit(); // sent and applied: only now is the round's dirty set gone (an exception above put it back)
        var trackers = round.Trackers.Select(t => (t.Tracker, t.Latency, t.PagesReported)).ToList();
        faults += round.Trackers.Count(t => t.Outcome != TrackerRoundOutcome.Read);
        return new RoundRow(phase, number, round.Pages, bytes, round.Duration, applied - start, trackers) { Faults = faults };
    }
}
