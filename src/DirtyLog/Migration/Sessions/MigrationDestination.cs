// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Memory;

namespace DirtyLog.Migration.Sessions;

/// <summary>
/// The destination side of a live migration, whole: it checks the source's header and accepts it, applies every
/// round, and resumes the guest only after the whole image and all state arrived and checked, through the VMM's
/// <see cref="IMigrationDestinationHooks"/>; then it tells the source that the guest runs here (or that it refused),
/// and checks every page against the source's memory digest.
/// </summary>
/// <remarks>
/// <para><b>Failure semantics.</b> <see cref="RunAsync"/> returns an outcome for every end and throws only for
/// misuse. A stream that fails its checks, is cut short or does not fit this memory, a state section that does not
/// load, a resume hook that throws, or a cancellation before the resume: the destination refuses (it tells the
/// source why, when it still can) and resumes nothing: <see cref="MigrationEnd.RunningOnSource"/>. Memory may hold
/// part of the image then; it is never run. Once the resume hook returned, the guest runs here
/// (<see cref="MigrationEnd.RunningOnDestination"/>), even if the source could not be told (it then reports an
/// unknown outcome and stays paused) or the digest check fails (said in the error: a page the source's tracking
/// lost). A memory hook (<see cref="IMigrationDestinationMemoryHooks"/>) that throws refuses the migration
/// too.</para>
/// <para><b>Thread safety.</b> <see cref="RunAsync"/> once per session; <see cref="Progress"/> and cancellation from
/// any thread. The connection is the session's while it runs and is not closed by it (but for a post-copy that lost
/// a connection: it is then disposed with the others, see <see cref="MigrationDestinationOptions.PostCopyRecoveryTimeout"/>).
/// A connection whose reads complete synchronously (a blocking socket) keeps the whole receive on the caller's
/// thread, the way to keep a thread-pool wake-up out of the downtime.</para>
/// </remarks>
public sealed partial class MigrationDestination
{
    private readonly GuestMemoryMap _memory;
    private readonly Stream _connection;
    private readonly IMigrationDestinationHooks _hooks;
    private readonly Stopwatch _clock = new();
    private MigrationProgress _progress;
    private int _ran;
    private uint _lastRecoveryAttempt; // post-copy's: the newest try of the source's a recovery took

    /// <summary>A session that will receive a guest into <paramref name="memory"/>.</summary>
    /// <param name="memory">The destination's guest memory, one region from guest-physical address 0: at least as large as the source's.</param>
    /// <param name="connection">A duplex connection from the source: pages come in, acknowledgements go out.</param>
    /// <param name="hooks">The VMM's state loading and resume.</param>
    /// <param name="options">How to receive; the defaults if <see langword="null"/>.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">The connection cannot both read and write, or an option is out of range.</exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0026", Justification = "The overloads differ in the type of a required parameter (a view or a map, unrelated types): no call is ambiguous.")]
    public MigrationDestination(GuestMemoryView memory, Stream connection, IMigrationDestinationHooks hooks, MigrationDestinationOptions? options = null)
        : this(new GuestMemoryMap(memory ?? throw new ArgumentNullException(nameof(memory))), connection, hooks, options)
    {
    }

    /// <summary>
    /// A session that will receive a guest into memory laid out as regions: each region the source announces (at the
    /// start, or plugged in while it migrates) must lie inside one region of <paramref name="memory"/>, or the
    /// destination refuses before a page of it is written. Hooks that also implement
    /// <see cref="IMigrationDestinationMemoryHooks"/> map each region as it is announced, and let go of those unplugged.
    /// </summary>
    /// <param name="memory">The destination's guest memory (it may start with no region when the hooks map them).</param>
    /// <param name="connection">A duplex connection from the source: pages come in, acknowledgements go out.</param>
    /// <param name="hooks">The VMM's state loading and resume, and optionally its memory mapping.</param>
    /// <param name="options">How to receive; the defaults if <see langword="null"/>.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">The connection cannot both read and write, or an option is out of range.</exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0026", Justification = "The overloads differ in the type of a required parameter (a view or a map, unrelated types): no call is ambiguous.")]
    public MigrationDestination(GuestMemoryMap memory, Stream connection, IMigrationDestinationHooks hooks, MigrationDestinationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(hooks);
        PassThroughStream.CheckDuplex(connection, "pages come in and acknowledgements go back on it");

        Options = options ?? new MigrationDestinationOptions();
        Options.Validate();
        _memory = memory;
        _connection = connection;
        _hooks = hooks;
        _progress = new MigrationProgress(MigrationPhase.Handshake, 0, 0, 0, 0, 0, 0, 0, TimeSpan.Zero, TimeSpan.Zero);
    }

    /// <summary>The options the session runs with.</summary>
    public MigrationDestinationOptions Options { get; }

    /// <summary>The latest progress: safe to read from any thread at any time.</summary>
    public MigrationProgress Progress => Volatile.Read(ref _progress);

    /// <summary>Receives the whole migration and resumes the guest here if, and only if, all of it arrived and checked.</summary>
    /// <param name="progress">Told at each phase change and each round applied; <see langword="null"/> for none.</param>
    /// <param name="cancellationToken">Cancels the migration: before the resume the destination refuses; after it, only the digest check stops.</param>
    /// <returns>How it ended; a failure is an outcome with its <see cref="MigrationOutcome.Error"/>, not an exception.</returns>
    /// <exception cref="InvalidOperationException">The session ran already.</exception>
    public async Task<MigrationOutcome> RunAsync(IProgress<MigrationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _ran, 1) != 0)
        {
            throw new InvalidOperationException("A migration session runs once; create another for another migration.");
        }

        _clock.Start();
        MigrationTelemetry.SessionStarted(this);
        PipeWriter acknowledgements = PipeWriter.Create(_connection, new StreamPipeWriterOptions(leaveOpen: true));
        // Reads of up to 2 MiB: a 1 MiB record in a few socket reads, not in 256 of the default 4 KiB.
        var input = PipeReader.Create(_connection, new StreamPipeReaderOptions(bufferSize: PageStreamWriter.RecommendedBufferSize, minimumReadSize: 64 << 10, leaveOpen: true));
        var reader = new PageStreamReader(input, _memory, Options.PageSize)
        {
            Acknowledgements = acknowledgements,
            AcknowledgeHeader = true,
            MemoryStartsZeroed = Options.MemoryStartsZeroed,
            DeferEndAcknowledgement = true, // the source learns of the end only once the guest runs here
            RegionAdding = _hooks is IMigrationDestinationMemoryHooks adding ? adding.AddRegionAsync : null,
            RegionRemoved = _hooks is IMigrationDestinationMemoryHooks removing ? removing.RemoveRegionAsync : null,
            MaxDataConnections = Options.ConnectionFactory is null ? 0 : Options.MaxDataConnections,
            AcceptDataConnection = Options.ConnectionFactory is { } factory ? factory.OpenAsync : null,
            DataConnectionTimeout = Options.DataConnectionTimeout,
            AllowPostCopy = Options.AllowPostCopy,
        };
        reader.RoundReceived = (round, summary) => Report(round == 1 ? MigrationPhase.PreCopy : _progress.Phase, summary, progress);
        try
        {
            MigrationOutcome outcome = await ReceiveAsync(reader, input, acknowledgements, progress, cancellationToken).ConfigureAwait(false) with { DataConnections = reader.DataConnections };
            Report(MigrationPhase.Ended, null, progress);
            MigrationTelemetry.Ended(outcome, "destination");
            return outcome;
        }
        finally
        {
            await reader.CloseDataConnectionsAsync().ConfigureAwait(false); // none applies a page once the session returned
            try
            {
                await acknowledgements.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
            {
                // The source is gone; the outcome says what that meant.
            }

            MigrationTelemetry.SessionEnded(this);
        }
    }

    private async Task<MigrationOutcome> ReceiveAsync(PageStreamReader reader, PipeReader input, PipeWriter acknowledgements, IProgress<MigrationProgress>? progress, CancellationToken cancellationToken)
    {
        Report(MigrationPhase.Handshake, null, progress);
        PageStreamSummary summary;
        MigrationPhase FailedPhase() => _progress.Phase == MigrationPhase.Handshake && reader.SourceMemoryBytes != 0 ? MigrationPhase.FirstPass : _progress.Phase;
        try
        {
            summary = await reader.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is PageStreamException or OperationCanceledException)
        {
            string why = e is OperationCanceledException ? "the destination was cancelled" : e.Message;
            return await RefuseAsync(reader, new MigrationException(FailedPhase(), $"the stream was not received whole: {why}", e), null).ConfigureAwait(false);
        }

        // Everything arrived and checked (each record's checksum and the chain at the end): load the state, resume.
        TimeSpan endAt = _clock.Elapsed;
        Report(MigrationPhase.Resuming, summary, progress);
        var names = new List<string>(reader.StateNames);
        foreach (string name in names)
        {
            ReadOnlyMemory<byte> payload = summary.States[name];
            if (payload.Length < 4)
            {
                return await RefuseAsync(reader, new MigrationException(MigrationPhase.Resuming, $"state section \"{name}\" has no version ({payload.Length} bytes)"), summary).ConfigureAwait(false);
            }

            var section = new MigrationStateSection(name, BinaryPrimitives.ReadUInt32LittleEndian(payload.Span), payload[4..]);
            try
            {
                await _hooks.LoadStateAsync(section, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                return await RefuseAsync(reader, new MigrationException(MigrationPhase.Resuming, $"state section \"{name}\" version {section.Version} could not be loaded: {e.Message}", e), summary).ConfigureAwait(false);
            }
        }

        if (reader.PostCopyDiscards is { } discarded && OperatingSystem.IsLinux()) // granted only there
        {
            return await PostCopyAsync(reader, input, acknowledgements, summary, discarded, names, endAt, progress, cancellationToken).ConfigureAwait(false);
        }

        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            await _hooks.ResumeAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            string why = e is OperationCanceledException ? "the destination was cancelled" : e.Message;
            return await RefuseAsync(reader, new MigrationException(MigrationPhase.Resuming, $"the guest could not be resumed here: {why}", e), summary).ConfigureAwait(false);
        }

        // The guest runs here from now on: whatever follows, this is where it runs.
        TimeSpan downtime = _clock.Elapsed - endAt;
        MigrationException? error = null;
        try
        {
            await reader.AcknowledgeEndAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (PageStreamException e)
        {
            error = new MigrationException(MigrationPhase.Resuming, $"the guest resumed here, but the source could not be told (it will report an unknown outcome and stay paused): {e.Message}", e);
        }

        bool verified = false;
        if (error is null && Options.VerifyMemoryDigest)
        {
            Report(MigrationPhase.Verifying, summary, progress);
            try
            {
                summary = await reader.VerifyMemoryDigestAsync(cancellationToken).ConfigureAwait(false);
                verified = summary.MemoryVerified;
            }
            catch (Exception e) when (e is PageStreamException or OperationCanceledException)
            {
                error = new MigrationException(MigrationPhase.Verifying, $"the guest runs here, but its memory was not verified against the source's: {e.Message}", e);
            }
        }

        return Outcome(MigrationEnd.RunningOnDestination, error, summary, names) with { Downtime = downtime, MemoryVerified = verified };
    }

    /// <summary>Refuses: tells the source why (if the connection still takes it) and resumes nothing.</summary>
    private async Task<MigrationOutcome> RefuseAsync(PageStreamReader reader, MigrationException error, PageStreamSummary? summary)
    {
        bool told = await reader.RefuseAsync(error.Message, CancellationToken.None).ConfigureAwait(false);
        MigrationException refused = told ? error : new MigrationException(error.Phase, $"{error.Message}; the source could not be told", error.InnerException);
        return Outcome(MigrationEnd.RunningOnSource, refused, summary, []);
    }

    private MigrationOutcome Outcome(MigrationEnd end, MigrationException? error, PageStreamSummary? summary, IReadOnlyList<string> sections) =>
        new(end, error?.Phase ?? MigrationPhase.Ended, error)
        {
            Rounds = summary is null ? _progress.Rounds : (int)summary.Rounds,
            TotalTime = _clock.Elapsed,
            Bytes = summary?.Bytes ?? _progress.BytesSent,
            Pages = summary?.DataPages ?? _progress.PagesSent,
            ZeroPages = summary?.ZeroPages ?? _progress.ZeroPages,
            StateSections = sections,
        };

    private void Report(MigrationPhase phase, PageStreamSummary? summary, IProgress<MigrationProgress>? sink)
    {
        var update = new MigrationProgress(phase, (int)(summary?.Rounds ?? _progress.Rounds), summary?.DataPages ?? _progress.PagesSent, summary?.ZeroPages ?? _progress.ZeroPages,
            summary?.Bytes ?? _progress.BytesSent, 0, 0, 0, TimeSpan.Zero, _clock.Elapsed);
        Volatile.Write(ref _progress, update);
        sink?.Report(update);
    }
}
