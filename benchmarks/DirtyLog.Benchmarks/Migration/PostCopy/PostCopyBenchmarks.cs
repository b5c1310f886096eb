// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;
using DirtyLog.Migration.Transport;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tracking;

namespace DirtyLog.Benchmarks.Migration.PostCopy;

/// <summary>
/// A guest that pre-copy cannot bring under its downtime limit: 256 MiB swept page by page, unthrottled, while it
/// migrates over loopback (two data connections) between two sessions of this process, guest RAM in transparent huge
/// pages on both sides (as QEMU maps it), its writes logged as the
/// sample's simulated vCPUs log theirs (a log entry per write and no trap, as PML or the dirty ring: a write-protect
/// fault per page would slow this guest to a few percent of its pace, and it would converge). Pre-copy with throttling (auto-converge: 20% more at each stall, up to 99%; the
/// baseline) against pre-copy then post-copy (the switch at the first stall, the guest resumed at the destination at
/// once, its touches of missing pages fetched). The time is the migration's, start to every page at the
/// destination; beside it, the downtime, the bytes sent on every connection, and the guest's pace over the whole
/// migration (its passes on either host per second) against its pace before, alone, and that pace on each side of
/// the switch (on the source until its pause, on the destination after it).
/// </summary>
/// <remarks>
/// The columns read what each migration measured (<see cref="PostCopyBenchmarkColumns"/>). The first migration of
/// each case (the warm-up, with the JIT) is left out of the columns' medians, as it is of the time's.
/// </remarks>
[InvocationCount(1)]
[WarmupCount(1)]
[IterationCount(7)]
[Config(typeof(PostCopyBenchmarkColumns))]
public class PostCopyBenchmarks
{
    private const ulong Bytes = 256UL << 20;
    private static readonly TimeSpan DowntimeLimit = TimeSpan.FromMilliseconds(20);

    private AnonymousMapping _source = null!;
    private SweepingGuest _guest = null!;
    private double _paceBefore; // passes per second, alone
    private AnonymousMapping? _destination;
    private SparseDirtyBitmap? _shared;
    private EmulatedTracker? _tracker;
    private ParallelHarvester? _harvester;
    private Socket? _listener;

    [GlobalSetup]
    public void Setup()
    {
        _source = new AnonymousMapping(Bytes);
        _source.SetHugePages(true); // guest RAM in transparent huge pages, as QEMU maps it
        var random = new Random(1);
        GuestMemoryView memory = View(_source);
        for (ulong page = 0; page < Bytes / 4096; page += 2)
        {
            random.NextBytes(memory.Slice(page * 4096, 4096)); // half the pages hold data, the rest zero but for the guest's word
        }

        _guest = new SweepingGuest(memory, "source guest", (first, count) => _tracker?.WriteRange(first * 4096, count * 4096));
        _guest.Resume();
        Thread.Sleep(300); // its pages faulted in
        double passes = _guest.Passes;
        long started = Stopwatch.GetTimestamp();
        Thread.Sleep(1000);
        _paceBefore = (_guest.Passes - passes) / Stopwatch.GetElapsedTime(started).TotalSeconds;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _guest.Dispose();
        _source.Dispose();
    }

    [IterationSetup]
    public void IterationSetup()
    {
        _guest.Throttle = 0;
        _guest.Resume();
        _destination = new AnonymousMapping(Bytes);
        _destination.SetHugePages(true);
        _shared = new SparseDirtyBitmap(40);
        _tracker = new EmulatedTracker("guest", new AddressRange(0, Bytes));
        _harvester = new ParallelHarvester(_shared);
        _harvester.Add(_tracker, TrackerFaultPolicy.FailRound);
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
    }

    [IterationCleanup]
    public void IterationCleanup()
    {
        _harvester?.Dispose();
        _tracker?.Dispose();
        _shared?.Dispose();
        _listener?.Dispose();
        _destination?.Dispose();
    }

    [Benchmark(Baseline = true, Description = "pre-copy, throttled")]
    public void ThrottledPreCopy() => Migrate(nameof(ThrottledPreCopy), postCopy: false).GetAwaiter().GetResult();

    [Benchmark(Description = "pre-copy, then post-copy")]
    public void PreCopyThenPostCopy() => Migrate(nameof(PreCopyThenPostCopy), postCopy: true).GetAwaiter().GetResult();

    private async Task Migrate(string name, bool postCopy)
    {
        long started = Stopwatch.GetTimestamp();
        double passesBefore = _guest.Passes;
        int port = ((IPEndPoint)_listener!.LocalEndPoint!).Port;
        var connector = new CountingConnector(new TcpMigrationConnector("127.0.0.1", port, null));
        var accepting = new TcpMigrationListener(_listener, null);
        Task<Stream> accepted = accepting.OpenAsync(CancellationToken.None).AsTask();
        Stream control = await connector.OpenAsync(CancellationToken.None).ConfigureAwait(false);
        await using Stream destinationControl = await accepted.ConfigureAwait(false);

        GuestMemoryView destinationMemory = View(_destination!);
        var destinationHooks = new GuestHooks(_guest, destinationMemory);
        var sourceOptions = new MigrationSourceOptions
        {
            PreCopy = new PreCopyOptions
            {
                DowntimeLimit = DowntimeLimit,
                MaxRounds = 30,
                StallRounds = 3,
                StallPolicy = postCopy ? StallPolicy.ForceStopCopy : StallPolicy.Throttle,
                SwitchToPostCopy = postCopy,
            },
            DataConnections = 2,
            ConnectionFactory = connector,
            PostCopy = postCopy ? PostCopyPolicy.WhenNotConverging : PostCopyPolicy.Off,
            SendMemoryDigest = false, // post-copy cannot send one: neither does pre-copy here
        };
        var destinationOptions = new MigrationDestinationOptions
        {
            MemoryStartsZeroed = true,
            VerifyMemoryDigest = false,
            ConnectionFactory = accepting,
            AllowPostCopy = postCopy,
        };

        var sourceHooks = new GuestHooks(_guest, null);
        var source = new MigrationSource(_harvester!, View(_source), control, sourceHooks, sourceOptions);
        var destination = new MigrationDestination(destinationMemory, destinationControl, destinationHooks, destinationOptions);
        Task<MigrationOutcome> receiving = Task.Run(() => destination.RunAsync());
        MigrationOutcome sent = await source.RunAsync().ConfigureAwait(false);
        MigrationOutcome received = await receiving.ConfigureAwait(false);
        TimeSpan total = Stopwatch.GetElapsedTime(started);
        await control.DisposeAsync().ConfigureAwait(false);
        double passes = _guest.Passes - passesBefore + destinationHooks.PassesHere;
        destinationHooks.Dispose();

        if (sent.End != MigrationEnd.RunningOnDestination || sent.Error is not null || received.Error is not null
            || (postCopy && received.PostCopy is not { Complete: true }) || (sent.Decision?.Action == PreCopyAction.PostCopy) != postCopy)
        {
            throw new InvalidOperationException($"{name}: the migration did not end as it should: {sent.End} {sent.Error?.Message} / {received.Error?.Message} ({sent.Decision?.Reason})");
        }

        // The guest's pace on each side of the switch: on the source until its pause, on the destination after it.
        TimeSpan before = Stopwatch.GetElapsedTime(started, sourceHooks.PausedAt);
        double paceBeforeSwitch = (_guest.Passes - passesBefore) / before.TotalSeconds / _paceBefore;
        double paceAfterSwitch = destinationHooks.PassesHere / (total - before).TotalSeconds / _paceBefore;
        PostCopyBenchmarkColumns.Record(name, new MigrationMeasurement(total, sent.Downtime, connector.BytesWritten, passes / total.TotalSeconds / _paceBefore, sent.Rounds,
            paceBeforeSwitch, paceAfterSwitch));
    }

    private static GuestMemoryView View(AnonymousMapping mapping) => new(mapping.Address, Bytes);

    /// <summary>
    /// Both VMMs' hooks: the source pauses its guest and throttles it 20% more at each request; the destination starts
    /// a guest of its own that carries on from the source's pass.
    /// </summary>
    private sealed class GuestHooks(SweepingGuest guest, GuestMemoryView? destination) : IMigrationSourceHooks, IMigrationDestinationHooks, IDisposable
    {
        private SweepingGuest? _here;
        private double _startedAt;

        public double PassesHere => _here is null ? 0 : _here.Passes - _startedAt;

        /// <summary>When the source paused its guest (a <see cref="Stopwatch"/> timestamp).</summary>
        public long PausedAt { get; private set; }

        public ValueTask PauseAsync(CancellationToken cancellationToken)
        {
            PausedAt = Stopwatch.GetTimestamp();
            guest.Pause();
            return ValueTask.CompletedTask;
        }

        public ValueTask ResumeAsync(CancellationToken cancellationToken)
        {
            if (destination is { } memory)
            {
                _startedAt = Math.Floor(guest.Passes);
                _here = new SweepingGuest(memory, "destination guest", startPass: (long)_startedAt);
                _here.Resume();
            }
            else
            {
                guest.Resume();
            }

            return ValueTask.CompletedTask;
        }

        public ValueTask<IReadOnlyList<MigrationStateSection>> SaveStateAsync(CancellationToken cancellationToken) =>
            ValueTask.FromResult<IReadOnlyList<MigrationStateSection>>([new MigrationStateSection("vcpu", 1, new byte[64])]);

        public ValueTask LoadStateAsync(MigrationStateSection section, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public void Throttle(ThrottleRequest request) => guest.Throttle = guest.Throttle == 0 ? 0.2 : guest.Throttle + 0.2;

        public void Dispose() => _here?.Dispose();
    }
}
