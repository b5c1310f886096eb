// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Harvesting;
using DirtyLog.Memory;
using DirtyLog.Tracking;

namespace DirtyLog.Migration.Sessions;

/// <summary>
/// The source side of a live migration, whole: the handshake, a first full pass while tracking logs what changes,
/// pre-copy rounds under a <see cref="PreCopyController"/>, the switch-over (pause, final harvest, the rest, the
/// device state, the end), the destination's answer, and the memory digest. The VMM supplies the trackers (in a
/// <see cref="ParallelHarvester"/>), its guest memory, a connection and its <see cref="IMigrationSourceHooks"/>.
/// </summary>
/// <remarks>
/// <para><b>Failure semantics.</b> <see cref="RunAsync"/> returns an outcome for every end and throws only for
/// misuse. Before the pause, any failure (the connection, a refusal, a tracker beyond <see cref="MigrationSourceOptions.RoundRetries"/>,
/// a hook, cancellation) leaves the guest running: <see cref="MigrationEnd.RunningOnSource"/>, with the round in
/// flight put back into the shared bitmap (nothing lost) and tracking stopped. After the pause and before the end
/// record is written, the destination cannot resume (it resumes only at a checked end), so the session resumes the
/// source through <see cref="IMigrationSourceHooks.ResumeAsync"/>. Once the end is being written, the source resumes
/// only on the destination's explicit refusal; if the answer does not come (the connection died, or
/// <see cref="MigrationSourceOptions.AnswerTimeout"/> passed) the guest stays paused and the outcome is
/// <see cref="MigrationEnd.Unknown"/>: the guest never runs on both hosts.</para>
/// <para><b>Tracking.</b> The session starts the harvester's trackers at the first pass and stops them when it
/// ends, whatever the end. The stream covers the regions of the <see cref="GuestMemoryMap"/> (a
/// <see cref="GuestMemoryView"/> is one region at address 0), which must hold every page the trackers report.</para>
/// <para><b>Memory hotplug.</b> Regions added to the map while the session runs are sent whole and then followed:
/// before each harvest the session marks every page of a region it has not seen, so the next round sends it, and the
/// trackers log what is written after. The VMM keeps this order, so that no write falls between the send and the
/// log: plug in = map the memory, declare its slot (the KVM trackers follow <c>KvmVmPort</c>), <see cref="GuestMemoryMap.Add"/>,
/// then tell the guest; unplug = the guest lets go, <see cref="GuestMemoryMap.Remove"/> (it waits for the copy in
/// flight), remove the slot, unmap. Pages the trackers report outside every region (written before the region was
/// added, or in one removed) are not sent: a region is sent whole when it is added, and a removed one is no longer
/// guest memory. The regions must not change while the guest is paused for the switch-over: the migration then fails
/// before its end, and the guest runs on here.</para>
/// <para><b>Thread safety.</b> <see cref="RunAsync"/> once per session. <see cref="Progress"/>,
/// <see cref="ContinueSwitchOver"/> and cancellation may be used from any thread while it runs. The connection is
/// the session's while it runs and is not closed by it, but for a post-copy that lost a connection: the session then
/// disposes it with the others, for the destination to see the cut on each, and carries on over new ones (see
/// <see cref="MigrationSourceOptions.PostCopyRecoveryTimeout"/>).</para>
/// </remarks>
public sealed partial class MigrationSource
{
    private readonly ParallelHarvester _harvester;
    private readonly GuestMemoryMap _memory;
    private readonly Stream _connection;
    private readonly IMigrationSourceHooks _hooks;
    private readonly Stopwatch _clock = new();
    private readonly TaskCompletionSource _continue = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<MigrationRound> _rounds = [];
    private MigrationProgress _progress;
    private int _ran;
    private volatile bool _postCopyRequested;

    /// <summary>A session that will migrate <paramref name="memory"/> as <paramref name="harvester"/>'s trackers see it change.</summary>
    /// <param name="harvester">The trackers of every writer of guest memory, in one harvester (they need not be started).</param>
    /// <param name="memory">The guest memory to send, one region from guest-physical address 0.</param>
    /// <param name="connection">A duplex connection to the destination: pages go out, acknowledgements come in.</param>
    /// <param name="hooks">The VMM's pause, resume, state and throttle.</param>
    /// <param name="options">How to migrate; the defaults if <see langword="null"/>.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">The connection cannot both read and write, or an option is out of range.</exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0026", Justification = "The overloads differ in the type of a required parameter (a view or a map, unrelated types): no call is ambiguous.")]
    public MigrationSource(ParallelHarvester harvester, GuestMemoryView memory, Stream connection, IMigrationSourceHooks hooks, MigrationSourceOptions? options = null)
        : this(harvester, new GuestMemoryMap(memory ?? throw new ArgumentNullException(nameof(memory))), connection, hooks, options)
    {
    }

    /// <summary>
    /// A session that will migrate guest memory laid out as regions, <paramref name="memory"/>, and follow it as
    /// regions are plugged in and out while it runs (see the remarks for the order the VMM keeps).
    /// </summary>
    /// <param name="harvester">The trackers of every writer of guest memory, in one harvester (they need not be started).</param>
    /// <param name="memory">The guest memory to send: its regions now, and those added while the session runs.</param>
    /// <param name="connection">A duplex connection to the destination: pages go out, acknowledgements come in.</param>
    /// <param name="hooks">The VMM's pause, resume, state and throttle.</param>
    /// <param name="options">How to migrate; the defaults if <see langword="null"/>.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">
    /// The connection cannot both read and write, an option is out of range, or a region is not a whole number of pages.
    /// </exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0026", Justification = "The overloads differ in the type of a required parameter (a view or a map, unrelated types): no call is ambiguous.")]
    public MigrationSource(ParallelHarvester harvester, GuestMemoryMap memory, Stream connection, IMigrationSourceHooks hooks, MigrationSourceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(harvester);
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(hooks);
        PassThroughStream.CheckDuplex(connection, "pages go out and acknowledgements come back on it");

        Options = options ?? new MigrationSourceOptions();
        Options.Validate();
        ulong pageSize = (ulong)Options.PreCopy.PageSize;
        foreach (HostMemoryRegion region in memory.Regions)
        {
            if (((region.GuestAddress | region.Length) & (pageSize - 1)) != 0)
            {
                throw new ArgumentException($"The guest memory's region of {region.Length:N0} bytes at 0x{region.GuestAddress:x} is not a whole number of {pageSize}-byte pages at a page boundary.", nameof(memory));
            }
        }

        _harvester = harvester;
        _memory = memory;
        _connection = connection;
        _hooks = hooks;
        _progress = new MigrationProgress(MigrationPhase.Handshake, 0, 0, 0, 0, memory.Size / pageSize, 0, 0, TimeSpan.Zero, TimeSpan.Zero);
    }

    /// <summary>The options the session runs with.</summary>
    public MigrationSourceOptions Options { get; }

    /// <summary>The latest progress: safe to read from any thread at any time.</summary>
    public MigrationProgress Progress => Volatile.Read(ref _progress);

    /// <summary>
    /// With <see cref="SwitchOverPolicy.PauseBeforeSwitchOver"/>: lets the held switch-over go on (the device state and
    /// the end are sent). Safe to call from any thread, before the hold or during it; calling it again does nothing.
    /// </summary>
    public void ContinueSwitchOver() => _continue.TrySetResult();

    /// <summary>
    /// Asks for post-copy: after the round in flight, the source pauses, sends the device state and the pages dirty
    /// since they were sent as a list to discard, and the guest resumes at the destination, which fetches them on
    /// demand. Needs <see cref="MigrationSourceOptions.PostCopy"/> other than <see cref="PostCopyPolicy.Off"/> and the
    /// destination's grant; without the grant, or once the switch-over began, it changes nothing (the outcome's
    /// <see cref="MigrationOutcome.Decision"/> says what ended pre-copy). Safe to call from any thread; again does nothing.
    /// </summary>
    /// <exception cref="InvalidOperationException">The options do not allow post-copy.</exception>
    public void SwitchToPostCopy()
    {
        if (Options.PostCopy == PostCopyPolicy.Off)
        {
            throw new InvalidOperationException("Post-copy is off for this session (MigrationSourceOptions.PostCopy).");
        }

        _postCopyRequested = true;
    }

    /// <summary>Runs the whole migration.</summary>
    /// <param name="progress">Told at each phase change and each round sent; <see langword="null"/> for none.</param>
    /// <param name="cancellationToken">
    /// Cancels the migration at any point: before the end is sent the guest runs on the source afterwards; while the
    /// answer is awaited, the outcome is <see cref="MigrationEnd.Unknown"/>.
    /// </param>
    /// <returns>How it ended; a failure is an outcome with its <see cref="MigrationOutcome.Error"/>, not an exception.</returns>
    /// <exception cref="InvalidOperationException">The session ran already.</exception>
    public async Task<MigrationOutcome> RunAsync(IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _ran, 1) != 0)
        {
            throw new InvalidOperationException("A migration session runs once; create another for another migration.");
        }

        _clock.Start();
        using var run = new Run(this, progress, cancellationToken);
        MigrationTelemetry.SessionStarted(this);
        try
        {
            return await run.ExecuteAsync().ConfigureAwait(false);
        }
        finally
        {
            MigrationTelemetry.SessionEnded(this);
        }
    }

    /// <summary>Publishes progress to the property, the caller's sink and the gauges.</summary>
    private void Publish(MigrationProgress update, IProgress<MigrationProgress>? sink)
    {
        Volatile.Write(ref _progress, update);
        sink?.Report(update);
    }
}
