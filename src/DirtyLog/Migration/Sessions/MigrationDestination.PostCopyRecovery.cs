// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipelines;
using System.Runtime.Versioning;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration.PostCopy;

namespace DirtyLog.Migration.Sessions;

public sealed partial class MigrationDestination
{
    /// <summary>
    /// After a cut in post-copy: every connection of the run that failed is disposed (the source must see the cut on
    /// each), the guest's touches of missing pages wait, and the connection factory accepts the source's new
    /// connections: first a control connection that presents this session's token and a try above every earlier one
    /// (it gets the pages still missing here), then as many push connections of the same try as before. A connection
    /// that is none of these is dropped and said in the error if recovery fails; a newer try's control connection
    /// replaces a try whose push connections are still awaited.
    /// </summary>
    /// <returns><see langword="null"/> once post-copy can carry on; otherwise why it cannot.</returns>
    [SupportedOSPlatform("linux")]
    private async Task<string?> RecoverPostCopyAsync(PageStreamReader reader, PostCopyMemory memory, PostCopyDestinationConnections connections,
        PageStreamSummary summary, IProgress<MigrationProgress>? progress, CancellationToken cancellationToken)
    {
        if (!connections.Recovered)
        {
            await reader.CloseDataConnectionsAsync().ConfigureAwait(false);
            try
            {
                await _connection.DisposeAsync().ConfigureAwait(false); // never used again: the source must see the cut on it too
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
            {
                // Cut already.
            }
        }

        connections.Dispose();
        ReportPostCopy(memory, summary, progress, MigrationPhase.PostCopyPaused);
        MigrationTelemetry.PostCopyPaused("destination");
        ulong token = reader.DataConnectionToken;
        var refused = new List<string>();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Options.PostCopyRecoveryTimeout);
        (Stream Stream, PipeReader Input, PostCopyResume Resume)? control = null;
        var push = new (Stream Stream, PipeReader Input)?[connections.PushCount];
        int arrived = 0;
        uint lastAttempt = _lastRecoveryAttempt;
        try
        {
            while (control is null || arrived < push.Length)
            {
                Stream stream = await Options.ConnectionFactory!.OpenAsync(timeout.Token).ConfigureAwait(false);
                if (stream is null || !stream.CanRead || !stream.CanWrite)
                {
                    refused.Add("the connection factory gave a connection that is null or not duplex");
                    stream?.Dispose();
                    continue;
                }

                var input = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: PageStreamWriter.RecommendedBufferSize, minimumReadSize: 64 << 10, leaveOpen: true));
                (PostCopyResume? read, string? refusal) = await ReadResumeAsync(input, timeout.Token).ConfigureAwait(false);
                if (refusal is null && read is { } resume)
                {
                    refusal =
                        resume.Token != token ? "a post-copy resume with another session's token"
                        : resume.PushConnections != (uint)push.Length ? $"a post-copy resume for {resume.PushConnections} push connections; this session has {push.Length}"
                        : resume.IsControl && resume.Attempt <= lastAttempt ? $"a post-copy resume of try {resume.Attempt}, not after try {lastAttempt}"
                        : !resume.IsControl && (control is null || resume.Attempt != control.Value.Resume.Attempt) ? $"a push connection of try {resume.Attempt}, which is not the try under way"
                        : !resume.IsControl && (resume.Index >= push.Length || push[resume.Index] is not null) ? $"push connection {resume.Index}, not one awaited"
                        : null;
                    if (refusal is null && resume.IsControl)
                    {
                        // A newer try: the source gave up the one before (its push connections will not come).
                        Drop(ref control, push, ref arrived);
                        lastAttempt = resume.Attempt;
                        control = (stream, input, resume);
                        var answers = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
                        try
                        {
                            PostCopyFormat.WriteMissing(answers, memory.MissingRuns()); // taken with no run installing: exactly what is not here
                            await answers.FlushAsync(timeout.Token).ConfigureAwait(false);
                        }
                        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
                        {
                            refused.Add($"try {resume.Attempt}'s control connection failed: {e.Message}");
                            Drop(ref control, push, ref arrived);
                        }

                        continue;
                    }

                    if (refusal is null)
                    {
                        push[resume.Index] = (stream, input);
                        arrived++;
                        continue;
                    }
                }

                refused.Add(refusal!);
                await stream.DisposeAsync().ConfigureAwait(false); // nothing of it was read past its resume
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or System.Net.Sockets.SocketException)
        {
            Drop(ref control, push, ref arrived);
            string dropped = refused.Count == 0 ? "" : $"; dropped: {string.Join("; ", refused)}";
            return cancellationToken.IsCancellationRequested
                ? $"the destination was cancelled while post-copy waited for the source{dropped}"
                : $"the source did not come back within {Options.PostCopyRecoveryTimeout.TotalSeconds:F0} s{(e is OperationCanceledException ? "" : $" ({e.Message})")}{dropped}";
        }

        _lastRecoveryAttempt = lastAttempt;
        var opened = new List<Stream> { control.Value.Stream };
        var inputs = new PipeReader[push.Length];
        for (int i = 0; i < push.Length; i++)
        {
            opened.Add(push[i]!.Value.Stream);
            inputs[i] = push[i]!.Value.Input;
        }

        connections.Adopt(opened, PipeWriter.Create(control.Value.Stream, new StreamPipeWriterOptions(leaveOpen: true)), control.Value.Input, inputs);
        return null;
    }

    /// <summary>A resume, read within the data connections' timeout (a peer that connects and stays silent holds nothing longer).</summary>
    private async Task<(PostCopyResume? Resume, string? Refusal)> ReadResumeAsync(PipeReader input, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Options.DataConnectionTimeout);
        try
        {
            return await PostCopyFormat.ReadResumeAsync(input, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return (null, "a connection sent no post-copy resume in time");
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            return (null, $"a connection failed before its resume: {e.Message}");
        }
    }

    /// <summary>Lets go of a try under way: its control connection and the push connections that arrived.</summary>
    private static void Drop(ref (Stream Stream, PipeReader Input, PostCopyResume Resume)? control, (Stream Stream, PipeReader Input)?[] push, ref int arrived)
    {
        control?.Stream.Dispose();
        control = null;
        for (int i = 0; i < push.Length; i++)
        {
            push[i]?.Stream.Dispose();
            push[i] = null;
        }

        arrived = 0;
    }
}
