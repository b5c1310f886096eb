// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Runtime.Versioning;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration.PostCopy;
using DirtyLog.Native;
using DirtyLog.Tracking;

namespace DirtyLog.Migration.Sessions;

public sealed partial class MigrationDestination
{
    /// <summary>How often progress is reported while post-copy runs.</summary>
    private static readonly TimeSpan PostCopyProgressPeriod = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// After a stream that switched to post-copy (its state loaded): the discarded pages are dropped and the memory
    /// registered for missing pages, the guest resumed, the source told; then requests go out and pages are installed
    /// until every page is here. A failure before the resume refuses (nothing ran here); after it the guest runs here,
    /// and a cut leaves its touches of missing pages waiting (never on a wrong page), said in the outcome.
    /// </summary>
    [SupportedOSPlatform("linux")]
    private async Task<MigrationOutcome> PostCopyAsync(PageStreamReader reader, PipeReader input, PipeWriter requests, PageStreamSummary summary,
        IReadOnlyList<DirtyRun> discarded, IReadOnlyList<string> names, TimeSpan endAt, IProgress<MigrationProgress>? progress, CancellationToken cancellationToken)
    {
        IReadOnlyList<HostMemoryRegion> regions = _memory.Regions;
        if (regions.Count != 1 || regions[0].GuestAddress != 0)
        {
            return await RefuseAsync(reader, new MigrationException(MigrationPhase.Resuming, $"post-copy needs this side's guest memory as one region at address 0; it has {regions.Count}"), summary).ConfigureAwait(false);
        }

        var memory = new PostCopyMemory(new GuestMemoryView(regions[0].HostAddress, regions[0].Length));
        var link = new PostCopyLink(memory);
        try
        {
            memory.Start([.. discarded], link);
            cancellationToken.ThrowIfCancellationRequested();
            await _hooks.ResumeAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            memory.Dispose(); // nothing ran here: the memory goes back to the VMM as it is
            string why = e switch
            {
                OperationCanceledException => "the destination was cancelled",
                KernelException or ArgumentOutOfRangeException => $"post-copy could not start here: {e.Message}",
                _ => e.Message,
            };
            return await RefuseAsync(reader, new MigrationException(MigrationPhase.Resuming, $"the guest could not be resumed here in post-copy: {why}", e), summary).ConfigureAwait(false);
        }

        // The guest runs here from now on, on pages that may still be at the source.
        TimeSpan downtime = _clock.Elapsed - endAt;
        ulong discardedPages = 0;
        foreach (DirtyRun run in discarded)
        {
            discardedPages += run.PageCount;
        }

        var clock = Stopwatch.StartNew();
        MigrationException? error = null;
        using var connections = new PostCopyDestinationConnections(requests, input, reader.DataConnectionInputs);
        try
        {
            await reader.AcknowledgePostCopyAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // The source, not told, reports an unknown outcome and stays paused: it will not come back to carry on.
            error = new MigrationException(MigrationPhase.PostCopy, $"the guest runs here, but the source could not be told (it will report an unknown outcome and stay paused, holding the {memory.Statistics.MissingPages:N0} pages missing here): {e.Message}", e);
        }

        _ = Task.Run(memory.ReleaseDiscardedPages, CancellationToken.None); // the downtime is over: free the stale copies beside the guest
        while (error is null)
        {
            try
            {
                ReportPostCopy(memory, summary, progress, MigrationPhase.PostCopy);
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                Task running = link.RunAsync(connections.Requests, connections.Answers, connections.Push, stop.Token);
                while (await Task.WhenAny(running, Task.Delay(PostCopyProgressPeriod, CancellationToken.None)).ConfigureAwait(false) != running)
                {
                    ReportPostCopy(memory, summary, progress, MigrationPhase.PostCopy);
                }

                await running.ConfigureAwait(false);
                break;
            }
            catch (Exception e)
            {
                error = new MigrationException(MigrationPhase.PostCopy,
                    $"post-copy was cut ({e.Message}): the guest runs here, and its touches of the {memory.Statistics.MissingPages:N0} pages still at the source wait for them", e);
            }

            if (memory.WhenComplete.IsCompleted)
            {
                error = null; // every page is here: nothing is left to fetch, whatever the connections did after
                break;
            }

            if (cancellationToken.IsCancellationRequested || Options.PostCopyRecoveryTimeout == TimeSpan.Zero)
            {
                break;
            }

            if (await RecoverPostCopyAsync(reader, memory, connections, summary, progress, cancellationToken).ConfigureAwait(false) is { } failed)
            {
                error = new MigrationException(MigrationPhase.PostCopy, $"{error.Message}; {failed}", error.InnerException);
                break;
            }

            error = null;
        }

        PostCopyStatistics statistics = memory.Statistics;
        if (error is null)
        {
            memory.Dispose(); // every page is valid here: the userfaultfd goes
        }

        var report = new PostCopyReport
        {
            DiscardedPages = discardedPages,
            PagesRequested = statistics.PagesRequested,
            PagesPushed = (ulong)link.PagesPushed,
            PagesArrivedTwice = statistics.PagesArrivedTwice,
            RequestLatencyMedian = statistics.RequestLatencyMedian,
            RequestLatencyP99 = statistics.RequestLatencyP99,
            BlockedTime = statistics.BlockedTime,
            Duration = clock.Elapsed,
            Complete = error is null,
            Recoveries = connections.Recoveries,
        };
        MigrationTelemetry.PostCopyEnded(report, "destination");
        return Outcome(MigrationEnd.RunningOnDestination, error, summary, names) with { Downtime = downtime, PostCopy = report };
    }

    [SupportedOSPlatform("linux")]
    private void ReportPostCopy(PostCopyMemory memory, PageStreamSummary summary, IProgress<MigrationProgress>? sink, MigrationPhase phase)
    {
        PostCopyStatistics statistics = memory.Statistics;
        var update = new MigrationProgress(phase, (int)summary.Rounds, summary.DataPages, summary.ZeroPages, summary.Bytes, statistics.MissingPages,
            0, 0, TimeSpan.Zero, _clock.Elapsed)
        {
            PostCopy = statistics,
        };
        Volatile.Write(ref _progress, update);
        sink?.Report(update);
    }
}
