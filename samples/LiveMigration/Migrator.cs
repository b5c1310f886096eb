// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Consumers;
using DirtyLog.Harvesting;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;
using DirtyLog.Migration.Transport;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// Both sides of the sample's migration, on DirtyLog's sessions: the sample supplies its VM (trackers, memory), its
/// hooks and its output; the sessions run the rounds, the switch-over, the answer and the failure semantics.
/// </summary>
internal static class Migrator
{
    /// <summary>Migrates the running source VM over <paramref name="connection"/>.</summary>
    /// <param name="vm">The source.</param>
    /// <param name="connection">The connection to the destination.</param>
    /// <param name="options">The sample's options.</param>
    /// <param name="progress">Called with each round sent.</param>
    /// <param name="cancellationToken">Cancels the migration.</param>
    /// <param name="consumers">Other consumers of the same trackers (a snapshot chain): each round sent is published to them first.</param>
    /// <param name="dataConnections">Opens the data connections (<see cref="MigrationOptions.Connections"/> of them), if any.</param>
    /// <returns>The session's outcome, the rounds as the report prints them, and when the guest paused.</returns>
    public static async Task<(MigrationOutcome Outcome, List<RoundRow> Rows, long PausedAt)> SendAsync(SourceVm vm, Stream connection, MigrationOptions options,
        Action<RoundRow> progress, CancellationToken cancellationToken, DirtyConsumerSet? consumers = null, IMigrationConnectionFactory? dataConnections = null)
    {
        var hooks = new SourceHooks(vm);
        var session = new MigrationSource(vm.Harvester, vm.Memory, connection, hooks, new MigrationSourceOptions
        {
            // Past the first fit, rounds go on while each halves the dirty set (QEMU switches at the first fit).
            PreCopy = new PreCopyOptions
            {
                DowntimeLimit = options.DowntimeLimit,
                KeepCopyingWhileShrinkingTo = options.KeepCopyingWhileShrinkingTo,
                StallPolicy = options.Throttle ? StallPolicy.Throttle : StallPolicy.ForceStopCopy,
            },
            Consumers = consumers,
            DataConnections = dataConnections is null ? 0 : options.Connections,
            ConnectionFactory = dataConnections,
            PostCopy = options.PostCopy && dataConnections is not null ? PostCopyPolicy.WhenNotConverging : PostCopyPolicy.Off,
        });

        // Tracking starts with the session's first pass; a device fault injected after it meets the first pre-copy round
        // (nic-b's writer injects more later).
        var rows = new List<RoundRow>();
        var printer = new RoundPrinter(rows, progress, options.InjectDeviceFaults ? vm.InjectDeviceFault : null);
        MigrationOutcome outcome = await session.RunAsync(printer, cancellationToken).ConfigureAwait(false);
        return (outcome, rows, hooks.PausedAt);
    }

    /// <summary>
    /// Receives a migration into <paramref name="vm"/> over <paramref name="connection"/> and resumes its vCPU there. Run
    /// it on a thread of its own over a blocking stream (see <see cref="SynchronousStream"/>): the end record's arrival
    /// then wakes this thread directly, not through the thread pool, and that wake-up is part of the downtime.
    /// </summary>
    /// <param name="vm">The destination.</param>
    /// <param name="guest">The guest whose vCPU resumes here, if any.</param>
    /// <param name="connection">The control connection from the source.</param>
    /// <param name="dataConnections">Accepts the data connections granted (at most <paramref name="maxDataConnections"/>), if any.</param>
    /// <param name="maxDataConnections">The most data connections granted.</param>
    /// <param name="allowPostCopy">Whether post-copy is granted (with data connections).</param>
    public static MigrationOutcome Receive(DestinationVm vm, BootGuest? guest, Stream connection, IMigrationConnectionFactory? dataConnections = null, int maxDataConnections = 0, bool allowPostCopy = false)
    {
        // The destination's RAM is a fresh mapping: zero pages need no touching where the stream wrote nothing.
        var session = new MigrationDestination(vm.Memory, connection, new DestinationHooks(vm, guest), new MigrationDestinationOptions
        {
            MemoryStartsZeroed = true,
            ConnectionFactory = dataConnections,
            MaxDataConnections = maxDataConnections,
            AllowPostCopy = allowPostCopy && dataConnections is not null && maxDataConnections > 0,
        });
        return session.RunAsync(null, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>A round as the report prints it.</summary>
    private static RoundRow Row(MigrationRound round) =>
        new(round.Phase switch { MigrationPhase.FirstPass => "full copy", MigrationPhase.StopCopy => "stop-copy", _ => "pre-copy" },
            round.Number, round.DirtyPages, round.BytesSent, round.Harvest, round.Send,
            round.Trackers.Select(t => (t.Tracker, t.Latency, t.PagesReported)).ToList())
        {
            Faults = round.TrackerFaults,
        };

    /// <summary>Prints each round as the session sends it; the stop-copy round waits for the end (printing is not downtime).</summary>
    private sealed class RoundPrinter(List<RoundRow> rows, Action<RoundRow> print, Action? afterFirstPass) : IProgress<MigrationProgress>
    {
        public void Report(MigrationProgress value)
        {
            if (value.Round is { } round)
            {
                if (round.Phase == MigrationPhase.FirstPass)
                {
                    afterFirstPass?.Invoke();
                }

                rows.Add(Row(round));
                if (round.Phase != MigrationPhase.StopCopy)
                {
                    print(rows[^1]);
                }
            }
            else if (value.Phase == MigrationPhase.Ended && rows.Count != 0 && rows[^1].Phase == "stop-copy")
            {
                print(rows[^1]);
            }
        }
    }
}
