// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Migration.PostCopy;

namespace DirtyLog.Migration.Sessions;

public sealed partial class MigrationSource
{
    private sealed partial class Run
    {
        /// <summary>The longest pause between two tries to reach the destination again.</summary>
        private static readonly TimeSpan MaxRecoveryBackoff = TimeSpan.FromSeconds(1);

        /// <summary>
        /// After a cut in post-copy: the connections of the run that failed are disposed (the destination must see
        /// the cut on every one, not only on the one that broke), then new ones are opened with the connection factory,
        /// a control connection and as many push connections as before, each presenting the session's token and
        /// this try's number; the destination answers on the control connection with the pages it still lacks, and
        /// post-copy carries on from those. Tries go on, with a growing pause, until the recovery timeout.
        /// </summary>
        /// <param name="recovery">The connections and counts so far; given the new ones on success.</param>
        /// <param name="cut">Why the last run failed, for the progress and the error.</param>
        /// <returns><see langword="null"/> once post-copy can carry on; otherwise why it cannot.</returns>
        private async Task<string?> RecoverPostCopyAsync(PostCopySourceConnections recovery, string cut)
        {
            recovery.Abandon(AbandonFirstConnections);
            Report(MigrationPhase.PostCopyPaused);
            MigrationTelemetry.PostCopyPaused("source");
            var clock = Stopwatch.StartNew();
            TimeSpan backoff = TimeSpan.FromMilliseconds(20);
            string last = cut;
            ulong pages = _session._memory.Size / (ulong)Options.PreCopy.PageSize;
            while (!Token.IsCancellationRequested)
            {
                TimeSpan left = Options.PostCopyRecoveryTimeout - clock.Elapsed;
                if (left <= TimeSpan.Zero)
                {
                    break;
                }

                uint attempt = recovery.NextAttempt();
                var opened = new List<Stream>();
                try
                {
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Token);
                    timeout.CancelAfter(left < Options.HandshakeTimeout ? left : Options.HandshakeTimeout);
                    Stream control = await OpenRecoveredAsync(opened, timeout.Token).ConfigureAwait(false);
                    var answers = PipeWriter.Create(control, new StreamPipeWriterOptions(leaveOpen: true));
                    var requests = PipeReader.Create(control, new StreamPipeReaderOptions(leaveOpen: true));
                    await ResumeAsync(answers, PostCopyFormat.ControlRole, 0, attempt, recovery.PushCount, timeout.Token).ConfigureAwait(false);
                    DirtyRun[] missing = await PostCopyFormat.ReadMissingAsync(requests, pages, timeout.Token).ConfigureAwait(false);
                    var push = new List<PipeWriter>();
                    for (int i = 0; i < recovery.PushCount; i++)
                    {
                        Stream connection = await OpenRecoveredAsync(opened, timeout.Token).ConfigureAwait(false);
                        var output = PipeWriter.Create(connection, new StreamPipeWriterOptions(minimumBufferSize: PageStreamWriter.RecommendedBufferSize, leaveOpen: true));
                        await ResumeAsync(output, PostCopyFormat.PushRole, i, attempt, recovery.PushCount, timeout.Token).ConfigureAwait(false);
                        push.Add(output);
                    }

                    recovery.Adopt(opened, requests, answers, push, missing);
                    Report(MigrationPhase.PostCopy);
                    return null;
                }
                catch (Exception e) when (!_cancellation.IsCancellationRequested)
                {
                    foreach (Stream connection in opened)
                    {
                        await connection.DisposeAsync().ConfigureAwait(false);
                    }

                    last = e is OperationCanceledException ? "the destination did not answer in time" : e.Message;
                }

                try
                {
                    await Task.Delay(backoff, Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                backoff = backoff * 2 < MaxRecoveryBackoff ? backoff * 2 : MaxRecoveryBackoff;
            }

            return $"it did not carry on within {Options.PostCopyRecoveryTimeout.TotalSeconds:F0} s of recovery (last try: {last})";
        }

        /// <summary>The first run's connections: the VMM's control connection too, for its peer to see the cut (it is never used again).</summary>
        private void AbandonFirstConnections()
        {
            try
            {
                _session._connection.Dispose();
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
            {
                // Cut already.
            }

            DisposeDataConnections();
        }

        private async Task<Stream> OpenRecoveredAsync(List<Stream> opened, CancellationToken cancellationToken)
        {
            Stream connection = await Options.ConnectionFactory!.OpenAsync(cancellationToken).ConfigureAwait(false)
                ?? throw new MigrationException(MigrationPhase.PostCopyPaused, "the connection factory gave a connection as null");
            opened.Add(connection);
            if (!connection.CanRead || !connection.CanWrite)
            {
                throw new MigrationException(MigrationPhase.PostCopyPaused, "the connection factory gave a connection that is not duplex");
            }

            return connection;
        }

        private async Task ResumeAsync(PipeWriter output, ushort role, int index, uint attempt, int pushCount, CancellationToken cancellationToken)
        {
            PostCopyFormat.WriteResume(output.GetSpan(PostCopyFormat.ResumeBytes), role, index, attempt, _acks.DataConnectionToken, pushCount);
            output.Advance(PostCopyFormat.ResumeBytes);
            await output.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}
