// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Harvesting;
using DirtyLog.Tracking;

namespace DirtyLog.Migration.Sessions;

public sealed partial class MigrationSource
{
    /// <summary>
    /// One migration's state, phase by phase; its failure handling is the session's failure semantics. Driven by one
    /// task; the acknowledgement reader runs beside it and only ever cancels <see cref="_abort"/>.
    /// </summary>
    private sealed partial class Run : IDisposable
    {
        private readonly MigrationSource _session;
        private readonly IProgress<MigrationProgress>? _sink;
        private readonly CancellationToken _cancellation;   // the caller's
        private readonly CancellationTokenSource _abort;    // the caller's, or the destination gone before its answer
        private readonly RateLimitedStream _wire;
        private readonly PipeWriter _output;
        private readonly PipeReader _fromDestination;  // the acknowledgements; after post-copy started, its page requests
        private readonly PageStreamAcknowledgements _acks;
        private readonly PageStreamWriter _writer;
        private PreCopyController _controller;         // made again after the handshake when post-copy is granted
        private readonly VcpuDirtyRates? _vcpuRates;
        private MigrationPhase _phase = MigrationPhase.Handshake;
        private bool _paused;        // this session paused the guest
        private bool _endWritten;    // the end record is on its way: from here only a refusal resumes the source
        private TimeSpan _pausedAt;  // on the acknowledgements' clock
        private PreCopyDecision? _decision;
        private ulong _remaining;
        private IReadOnlyList<string> _sections = [];
        private PostCopySourceConnections? _postCopyConnections; // post-copy's, once it started: those of a recovery are the session's

        public Run(MigrationSource session, IProgress<MigrationProgress>? sink, CancellationToken cancellation)
        {
            _session = session;
            _sink = sink;
            _cancellation = cancellation;
            _abort = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            _wire = new RateLimitedStream(session._connection);
            _output = PipeWriter.Create(_wire, new StreamPipeWriterOptions(minimumBufferSize: PageStreamWriter.RecommendedBufferSize, leaveOpen: true));
            _fromDestination = PipeReader.Create(session._connection, new StreamPipeReaderOptions(leaveOpen: true));
            _acks = new PageStreamAcknowledgements(_fromDestination);
            int pageSize = (int)session.Options.PreCopy.PageSize;
            _writer = new PageStreamWriter(_output, session._memory, pageSize)
            {
                SkipPagesOutsideRegions = true, // see the type's hotplug remarks
                RequestedDataConnections = session.Options.DataConnections,
                OfferPostCopy = session.Options.PostCopy != PostCopyPolicy.Off,
            };
            _controller = new PreCopyController(session.Options.PreCopy, session._hooks.Throttle);
            _remaining = session._memory.Size / (ulong)pageSize;
            KvmDirtyRingTracker? ring = session._harvester.Trackers.OfType<KvmDirtyRingTracker>().FirstOrDefault();
            _vcpuRates = ring is null ? null : new VcpuDirtyRates(ring);
        }

        /// <summary>How long a failed write waits for a refusal already on its way back.</summary>
        private static readonly TimeSpan RefusalGrace = TimeSpan.FromSeconds(1);

        private CancellationToken Token => _abort.Token;

        private MigrationSourceOptions Options => _session.Options;

        public async Task<MigrationOutcome> ExecuteAsync()
        {
            Task acknowledgements = ReadAcknowledgementsAsync();
            MigrationOutcome outcome;
            try
            {
                await HandshakeAsync().ConfigureAwait(false);
                await FirstPassAsync().ConfigureAwait(false);
                await PreCopyAsync().ConfigureAwait(false);
                if (_decision?.Action == PreCopyAction.PostCopy)
                {
                    outcome = await PostCopyAsync(acknowledgements).ConfigureAwait(false);
                }
                else
                {
                    await StopCopyAsync().ConfigureAwait(false);
                    outcome = await AwaitDestinationAsync().ConfigureAwait(false);
                    if (outcome.End == MigrationEnd.RunningOnDestination)
                    {
                        outcome = await VerifyAsync(outcome).ConfigureAwait(false);
                    }
                }
            }
            catch (Exception e)
            {
                if (e is System.IO.IOException or System.Net.Sockets.SocketException && _acks.Refusal is null)
                {
                    // A destination that refuses mid-stream says why, then closes: a write can fail on the reset before
                    // the acknowledgements reader took the reason. Let it read what is there, briefly, to name the cause.
                    await Task.WhenAny(acknowledgements, Task.Delay(RefusalGrace, CancellationToken.None)).ConfigureAwait(false);
                }

                outcome = await FailAsync(e).ConfigureAwait(false);
            }

            outcome = await CloseAsync(outcome, acknowledgements).ConfigureAwait(false);
            Report(MigrationPhase.Ended); // the outcome names the phase a failure happened in
            MigrationTelemetry.Ended(outcome, "source");
            return outcome;
        }

        /// <summary>The destination's side of the connection; when it ends before the answer, every send and wait stops.</summary>
        private async Task ReadAcknowledgementsAsync()
        {
            try
            {
                await _acks.RunAsync(_abort.Token).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Seen by every waiter (the acknowledgements fail them with the same error); nothing to add here.
            }
            finally
            {
                if (!_acks.EndApplied && !_acks.PostCopyStarted)
                {
                    CancelQuietly(); // a refusal or a closed connection: a send blocked on a full socket must not wait for ever
                }
            }
        }

        /// <summary>Handshake: the header goes alone, and no page follows before the destination accepted it.</summary>
        private async Task HandshakeAsync()
        {
            Report(MigrationPhase.Handshake);
            await _writer.WriteHeaderAsync(Token).ConfigureAwait(false);
            try
            {
                await _acks.WaitForAcceptanceAsync(Token).WaitAsync(Options.HandshakeTimeout, Token).ConfigureAwait(false);
            }
            catch (TimeoutException e)
            {
                throw new MigrationException(MigrationPhase.Handshake, $"the destination did not accept the stream within {Options.HandshakeTimeout.TotalSeconds:F0} s", e);
            }

            await OpenDataConnectionsAsync().ConfigureAwait(false);
            if (_acks.PostCopyGranted && Options.PostCopy == PostCopyPolicy.WhenNotConverging)
            {
                _controller = new PreCopyController(Options.PreCopy with { SwitchToPostCopy = true }, _session._hooks.Throttle);
            }
        }

        /// <summary>Handles a failure by the semantics in the type's remarks.</summary>
        private async Task<MigrationOutcome> FailAsync(Exception failure)
        {
            MigrationException error = Explain(failure);
            if (!_paused)
            {
                return Outcome(MigrationEnd.RunningOnSource, error);
            }

            if (!_endWritten)
            {
                // Paused, but the destination has no end and cannot resume: the guest is the source's again.
                return Outcome(MigrationEnd.RunningOnSource, await ResumeSourceAsync(error).ConfigureAwait(false));
            }

            return Outcome(MigrationEnd.Unknown, error);
        }

        /// <summary>Resumes the source guest; a resume that fails is said in the error (the guest is then the source's, paused).</summary>
        private async Task<MigrationException> ResumeSourceAsync(MigrationException error)
        {
            try
            {
                await _session._hooks.ResumeAsync(CancellationToken.None).ConfigureAwait(false);
                return error;
            }
            catch (Exception e)
            {
                return new MigrationException(error.Phase, $"{error.Message}; then the source guest could not be resumed: {e.Message}", new AggregateException(error, e))
                {
                    RefusedByDestination = error.RefusedByDestination,
                };
            }
        }

        /// <summary>A failure as the caller reads it: the phase, and the destination's reason when it refused.</summary>
        private MigrationException Explain(Exception failure)
        {
            if (_acks.Refusal is { } reason)
            {
                return new MigrationException(_phase, $"the destination refused the migration: {reason}", failure) { RefusedByDestination = true };
            }

            return failure switch
            {
                MigrationException known => known,
                OperationCanceledException when _cancellation.IsCancellationRequested => new MigrationException(_phase, "the migration was cancelled", failure),
                OperationCanceledException => new MigrationException(_phase, $"the destination's connection ended: {AcknowledgementFailure() ?? failure.Message}", failure),
                HarvestException harvest => new MigrationException(_phase, $"tracker {harvest.Tracker} failed more rounds in a row than allowed ({Options.RoundRetries} retries): {harvest.Message}", failure),
                DirtyTrackerException tracker => new MigrationException(_phase, $"dirty tracking failed: {tracker.Message}", failure),
                PageStreamException stream => new MigrationException(_phase, $"the page stream failed: {stream.Message}", failure),
                System.IO.IOException or System.Net.Sockets.SocketException or ObjectDisposedException => new MigrationException(_phase, $"the connection failed: {failure.Message}", failure),
                _ => new MigrationException(_phase, $"{failure.GetType().Name}: {failure.Message}", failure),
            };
        }

        /// <summary>Why the acknowledgements ended, if they did.</summary>
        private string? AcknowledgementFailure() => _acks.Failure?.Message;

        /// <summary>Stops tracking and lets the connection go, whatever the end; a tracker that does not stop is said in the outcome.</summary>
        private async Task<MigrationOutcome> CloseAsync(MigrationOutcome outcome, Task acknowledgements)
        {
            try
            {
                _session._harvester.StopTracking();
            }
            catch (Exception e) when (e is AggregateException or DirtyTrackerException or ObjectDisposedException)
            {
                outcome = outcome with { Error = outcome.Error ?? new MigrationException(outcome.Phase, $"tracking did not stop cleanly: {e.Message}", e) };
            }

            foreach (PipeWriter output in (PipeWriter[])[_output, .. _dataOutputs])
            {
                try
                {
                    await output.CompleteAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is System.IO.IOException or System.Net.Sockets.SocketException or ObjectDisposedException or OperationCanceledException)
                {
                    // The connection is gone; the outcome says what that meant.
                }
            }

            CancelQuietly();
            await acknowledgements.ConfigureAwait(false);
            return outcome;
        }

        public void Dispose()
        {
            _abort.Dispose();
            _wire.Dispose(); // the pacing only: the connection is the VMM's
            DisposeDataConnections(); // those are the session's
            _postCopyConnections?.Dispose();
        }

        private void CancelQuietly()
        {
            try
            {
                _abort.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // Closed already.
            }
        }

        private MigrationOutcome Outcome(MigrationEnd end, MigrationException? error) =>
            new(end, error is null ? MigrationPhase.Ended : error.Phase, error)
            {
                Rounds = _session._rounds.Count,
                RoundReports = _session._rounds.ToArray(),
                TotalTime = _session._clock.Elapsed,
                Bytes = _writer.BytesWritten,
                Pages = _writer.DataPages,
                ZeroPages = _writer.ZeroPages,
                Decision = _decision,
                StateSections = _sections,
                DataConnections = _writer.DataConnections,
            };

        private void Report(MigrationPhase phase, MigrationRound? round = null)
        {
            _phase = phase;
            PreCopyDecision? decision = _decision;
            double bandwidth = _controller.Bandwidth;
            _session.Publish(
                new MigrationProgress(phase, _session._rounds.Count, _writer.DataPages, _writer.ZeroPages, _writer.BytesWritten, _remaining,
                    decision?.DirtyRate ?? 0, bandwidth, bandwidth > 0 ? TimeSpan.FromSeconds(_remaining * (double)Options.PreCopy.PageSize / bandwidth) : TimeSpan.Zero,
                    _session._clock.Elapsed)
                { Round = round },
                _sink);
        }
    }
}
