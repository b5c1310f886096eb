// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Memory;
using DirtyLog.Migration.PostCopy;

namespace DirtyLog.Migration.Sessions;

public sealed partial class MigrationSource
{
    private sealed partial class Run
    {
        /// <summary>
        /// The session's word on post-copy, after the controller's: the VMM's request turns a round that would copy on
        /// into the switch (a stop-copy that fits the limit stays one); a switch needs memory as one region at address 0.
        /// </summary>
        private PreCopyDecision PostCopyOrNot(PreCopyDecision decision)
        {
            if (_session._postCopyRequested && _acks.PostCopyGranted && decision.Action is PreCopyAction.Continue or PreCopyAction.Throttle)
            {
                decision = decision with { Action = PreCopyAction.PostCopy, Reason = $"the VMM asked for post-copy ({decision.Reason})" };
            }

            if (decision.Action == PreCopyAction.PostCopy && PostCopyMemory() is null)
            {
                decision = decision with { Action = PreCopyAction.StopCopy, Reason = $"{decision.Reason}; but guest memory is not one region at address 0, which post-copy needs: stop-copy instead" };
            }

            return decision;
        }

        /// <summary>Guest memory as post-copy sees it: one region from guest-physical address 0; <see langword="null"/> otherwise.</summary>
        private GuestMemoryView? PostCopyMemory()
        {
            var regions = _session._memory.Regions;
            return regions.Count == 1 && regions[0].GuestAddress == 0 ? new GuestMemoryView(regions[0].HostAddress, regions[0].Length) : null;
        }

        /// <summary>
        /// The switch to post-copy: pause, the final harvest (its pages are not sent but listed, for the destination to
        /// discard), the state, the post-copy record; then, once the destination says the guest runs there, the
        /// answers to its requests and the push of every listed page. Before the destination's word, a failure is
        /// stop-copy's (a refusal resumes the source; no answer leaves it paused). After it the guest runs there: a
        /// failure leaves it waiting on pages only this source holds, said in the outcome.
        /// </summary>
        private async Task<MigrationOutcome> PostCopyAsync(Task acknowledgements)
        {
            GuestMemoryView memory = PostCopyMemory()!;
            Report(MigrationPhase.StopCopy);
            Pace(0); // the guest is paused, and then runs on pages in flight: no cap
            _pausedAt = _acks.Now;
            _paused = true;
            await _session._hooks.PauseAsync(Token).ConfigureAwait(false);
            (HarvestRound final, int retries) = Harvest(final: true);
            DirtyRun[] discarded;
            using (final)
            {
                discarded = final.Runs.ToArray();
                _remaining = final.Pages;
                Options.Consumers?.Publish(final.Runs);
                final.Commit(); // they leave the shared bitmap: post-copy sends every one of them
                Record(new MigrationRound(_session._rounds.Count + 1, MigrationPhase.StopCopy, final.Pages, 0, final.Duration, TimeSpan.Zero, retries, final.Trackers)
                {
                    TrackerFaults = retries + Faults(final) + _faultsPutBack,
                });
            }

            await WriteStateAsync().ConfigureAwait(false);
            CheckRegionsUnchanged();
            Report(MigrationPhase.AwaitingDestination);
            _endWritten = true; // from here only a refusal resumes the source
            await _writer.WritePostCopyAsync(discarded, Token).ConfigureAwait(false);

            TimeSpan started;
            try
            {
                started = await _acks.WaitForPostCopyAsync(Token).WaitAsync(Options.AnswerTimeout, Token).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                return await NoWordAsync(e).ConfigureAwait(false);
            }

            TimeSpan downtime = started - _pausedAt;
            MigrationTelemetry.Downtime(downtime);
            await acknowledgements.ConfigureAwait(false); // it stopped just after the word: the requests follow on its direction
            Report(MigrationPhase.PostCopy);
            var clock = Stopwatch.StartNew();
            var recovery = _postCopyConnections = new PostCopySourceConnections(_fromDestination, _output, _dataOutputs, discarded);
            MigrationException? error = null;
            while (true)
            {
                var source = new PostCopySource(memory, recovery.Pending, (int)Options.PreCopy.PageSize);
                try
                {
                    await source.RunAsync(recovery.Requests, recovery.Answers, recovery.Push, Token).ConfigureAwait(false);
                    recovery.Count(source);
                    break;
                }
                catch (Exception e)
                {
                    recovery.Count(source);
                    error = new MigrationException(MigrationPhase.PostCopy,
                        $"post-copy was cut ({Explain(e).Message}): the guest runs at the destination, waiting on pages only this source holds; keep its memory", e);
                }

                if (Token.IsCancellationRequested || Options.PostCopyRecoveryTimeout == TimeSpan.Zero)
                {
                    break;
                }

                if (await RecoverPostCopyAsync(recovery, error.Message).ConfigureAwait(false) is { } failed)
                {
                    error = new MigrationException(MigrationPhase.PostCopy, $"{error.Message}; {failed}", error.InnerException);
                    break;
                }

                error = null;
            }

            var report = new PostCopyReport
            {
                DiscardedPages = final.Pages,
                PagesRequested = recovery.PagesAnswered,
                PagesPushed = recovery.PagesPushed,
                Duration = clock.Elapsed,
                Complete = error is null,
                Recoveries = recovery.Recoveries,
            };
            MigrationTelemetry.PostCopyEnded(report, "source");
            _remaining = 0;
            return Outcome(MigrationEnd.RunningOnDestination, error) with { Downtime = downtime, PostCopy = report, Bytes = _writer.BytesWritten };
        }
    }
}
