// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tracking;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// A whole migration between two sessions in this process, over loopback TCP: a source with a running simulated
/// guest, its tracker and harvester, a destination with its own memory, hooks on both that fail or hold where a test
/// says, and a connection the test cuts. <see cref="Judge"/> says whether the end keeps the sessions' promises.
/// </summary>
internal sealed class SessionRig : IDisposable
{
    public const ulong MiB = 1UL << 20;

    private readonly AnonymousMapping _sourceMapping;
    private readonly AnonymousMapping _destinationMapping;
    private readonly SparseDirtyBitmap _shared = new(40);

    public SessionRig(ulong sourceBytes = 16 * MiB, ulong? destinationBytes = null, int seed = 1)
    {
        _sourceMapping = new AnonymousMapping(sourceBytes);
        _destinationMapping = new AnonymousMapping(destinationBytes ?? sourceBytes);
        SourceMemory = new GuestMemoryView(_sourceMapping.Address, sourceBytes);
        DestinationMemory = new GuestMemoryView(_destinationMapping.Address, destinationBytes ?? sourceBytes);

        // A quarter of the pages hold data before the migration; the rest are zero pages until the guest writes them.
        var random = new Random(seed);
        for (ulong page = 0; page < sourceBytes / 4096; page += 4)
        {
            random.NextBytes(SourceMemory.Slice(page * 4096, 4096));
        }

        Tracker = new EmulatedTracker("vcpus", new AddressRange(0, sourceBytes));
        Harvester = new ParallelHarvester(_shared);
        Harvester.Add(Tracker, TrackerFaultPolicy.FailRound);
        Guest = new SimulatedGuest(SourceMemory, Tracker, seed);
        SourceHooks = new RigSourceHooks(Guest);
    }

    public GuestMemoryView SourceMemory { get; }

    public GuestMemoryView DestinationMemory { get; }

    public EmulatedTracker Tracker { get; }

    public ParallelHarvester Harvester { get; }

    public SimulatedGuest Guest { get; }

    public RigSourceHooks SourceHooks { get; }

    public RigDestinationHooks DestinationHooks { get; } = new();

    /// <summary>Pre-copy that converges in a few rounds on loopback: a 5 ms downtime limit, at most 6 rounds.</summary>
    public MigrationSourceOptions SourceOptions { get; set; } = new()
    {
        PreCopy = new PreCopyOptions { DowntimeLimit = TimeSpan.FromMilliseconds(5), MaxRounds = 6 },
        AnswerTimeout = TimeSpan.FromSeconds(20),
    };

    public MigrationDestinationOptions DestinationOptions { get; set; } = new() { MemoryStartsZeroed = true };

    public CuttableConnection? Connection { get; private set; }

    /// <summary>
    /// Data connections the source asks for (0: none); with some, both sessions get the paired factories, and the
    /// destination grants at most <see cref="MigrationDestinationOptions.MaxDataConnections"/> of them.
    /// </summary>
    public int DataConnections { get; set; }

    /// <summary>Whether the destination has a factory to accept data connections with (when <see cref="DataConnections"/> is above 0).</summary>
    public bool DestinationAcceptsDataConnections { get; set; } = true;

    /// <summary>The data connections' two ends, once <see cref="RunAsync"/> made them.</summary>
    public PairedConnectionFactories DataConnectionFactories { get; } = new();

    public MigrationSource? Source { get; private set; }

    /// <summary>Runs both sessions with the guest running from the start.</summary>
    /// <param name="cutBeforeWrite">Asked before each of the source's writes (its progress, bytes written); true cuts the connection.</param>
    /// <param name="sourceCancellation">The source's cancellation.</param>
    /// <param name="destinationCancellation">The destination's cancellation.</param>
    /// <param name="onSourceProgress">Told of the source's progress inline, on the session's task.</param>
    public async Task<(MigrationOutcome Source, MigrationOutcome Destination)> RunAsync(
        Func<MigrationProgress, long, bool>? cutBeforeWrite = null,
        Action<MigrationProgress>? onSourceProgress = null,
        CancellationToken sourceCancellation = default,
        CancellationToken destinationCancellation = default)
    {
        Connection = await CuttableConnection.OpenAsync().ConfigureAwait(false);
        if (DataConnections > 0)
        {
            SourceOptions = SourceOptions with { DataConnections = DataConnections, ConnectionFactory = DataConnectionFactories.Source };
            DestinationOptions = DestinationOptions with { ConnectionFactory = DestinationAcceptsDataConnections ? DataConnectionFactories.Destination : null };
        }

        var destination = new MigrationDestination(DestinationMemory, Connection.Destination, DestinationHooks, DestinationOptions);
        var source = new MigrationSource(Harvester, SourceMemory, Connection.Source, SourceHooks, SourceOptions);
        Source = source;
        if (cutBeforeWrite is not null)
        {
            Connection.Source.CutBeforeWrite = written => cutBeforeWrite(source.Progress, written);
        }

        Guest.Resume();
        // Each VMM closes its end once its session returned, as a VMM does: the peer then reads the end of the stream.
        CuttableConnection connection = Connection;
        Task<MigrationOutcome> received = Task.Run(async () =>
        {
            MigrationOutcome outcome = await destination.RunAsync(null, destinationCancellation).ConfigureAwait(false);
            connection.CloseDestination();
            return outcome;
        });
        Task<MigrationOutcome> sent = Task.Run(async () =>
        {
            MigrationOutcome outcome = await source.RunAsync(onSourceProgress is null ? null : new InlineProgress(onSourceProgress), sourceCancellation).ConfigureAwait(false);
            connection.CloseSource();
            return outcome;
        });
        await Task.WhenAll(sent, received).WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
        return (await sent.ConfigureAwait(false), await received.ConfigureAwait(false));
    }

    /// <summary>
    /// What the sessions promise, judged from both VMMs' state and both memories: the guest runs on exactly one side,
    /// or the source holds it paused with the outcome unknown; a destination that runs it holds every page of the
    /// source; each outcome says where the guest is.
    /// </summary>
    /// <returns>The broken promise, or <see langword="null"/>.</returns>
    public string? Judge(MigrationOutcome source, MigrationOutcome destination)
    {
        bool onSource = Guest.IsRunning, onDestination = DestinationHooks.Resumed;
        if (onSource && onDestination)
        {
            return "the guest runs on both hosts";
        }

        if (!onSource && !onDestination && source.End != MigrationEnd.Unknown)
        {
            return $"the guest runs nowhere and the source says {source.End}";
        }

        if (source.End == MigrationEnd.Unknown && onSource)
        {
            return "the outcome is unknown and the source resumed its guest anyway";
        }

        if ((source.End == MigrationEnd.RunningOnSource) != onSource)
        {
            return $"the source says {source.End} while its guest {(onSource ? "runs" : "is paused")}";
        }

        if ((destination.End == MigrationEnd.RunningOnDestination) != onDestination)
        {
            return $"the destination says {destination.End} while {(onDestination ? "a guest runs there" : "nothing runs there")}";
        }

        if (source.End == MigrationEnd.RunningOnDestination && !onDestination)
        {
            return "the source says the guest runs on the destination, which did not resume it";
        }

        if (onDestination)
        {
            ulong pages = SourceMemory.Size / 4096;
            for (ulong page = 0; page < pages; page++)
            {
                if (!SourceMemory.Slice(page * 4096, 4096).SequenceEqual(DestinationMemory.Slice(page * 4096, 4096)))
                {
                    return $"the destination runs the guest with page {page} unlike the source's";
                }
            }

            if (DestinationHooks.Loaded.Select(s => (s.Name, s.Version, Convert.ToHexString(s.Data.Span))).SequenceEqual(
                SourceHooks.Sections.Select(s => (s.Name, s.Version, Convert.ToHexString(s.Data.Span)))) is false)
            {
                return "the destination runs the guest with state sections unlike the source's";
            }
        }

        return null;
    }

    public void Dispose()
    {
        Guest.Dispose();
        Connection?.Dispose();
        DataConnectionFactories.Dispose();
        Harvester.Dispose();
        Tracker.Dispose();
        _shared.Dispose();
        _sourceMapping.Dispose();
        _destinationMapping.Dispose();
    }

    /// <summary>Progress told inline, on the reporting thread (a test's trigger must see the phase as it is).</summary>
    private sealed class InlineProgress(Action<MigrationProgress> report) : IProgress<MigrationProgress>
    {
        public void Report(MigrationProgress value) => report(value);
    }
}
