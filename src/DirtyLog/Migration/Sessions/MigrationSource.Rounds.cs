// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Tracking;

namespace DirtyLog.Migration.Sessions;

public sealed partial class MigrationSource
{
    private sealed partial class Run
    {
        private (ulong Bytes, TimeSpan Duration) _lastSend;
        private TimeSpan _lastHarvest;
        private int _faultsPutBack; // faults of the harvest a switch-over put back: reported with stop-copy

        /// <summary>The first pass: tracking starts, then every page goes; what the guest writes meanwhile is logged.</summary>
        private async Task FirstPassAsync()
        {
            Report(MigrationPhase.FirstPass);
            _session._harvester.StartTracking();
            _vcpuRates?.Sample(); // the rates are measured from here

            // The regions after tracking started: one added later is marked before the next harvest (FollowRegions).
            DirtyRun[] all = FirstPassRuns(out ulong pages);
            _controller.Observe(new RoundObservation(pages, 0, TimeSpan.Zero, TimeSpan.Zero)); // all dirty, no bandwidth yet: copy
            Pace(Options.BandwidthLimit);
            TimeSpan start = _acks.Now;
            long bytes = await _writer.WriteRoundAsync(all, Token).ConfigureAwait(false);
            TimeSpan applied = await _acks.WaitForRoundAsync(_writer.Rounds, Token).ConfigureAwait(false);
            _lastSend = ((ulong)bytes, applied - start);
            _lastHarvest = _acks.Now;
            Record(new MigrationRound(1, MigrationPhase.FirstPass, pages, bytes, TimeSpan.Zero, applied - start, 0, []));
        }

        /// <summary>
        /// Pre-copy: each round is decided on the dirty set just harvested (as QEMU decides on a fresh sync) and the
        /// bandwidth of the last send, end to end; a round not sent goes back to the shared bitmap for stop-copy.
        /// </summary>
        private async Task PreCopyAsync()
        {
            Report(MigrationPhase.PreCopy);
            TimeSpan started = _acks.Now;
            while (true)
            {
                (HarvestRound round, int retries) = Harvest(final: false);
                using (round)
                {
                    _remaining = round.Pages;
                    PreCopyDecision decision = _controller.Observe(new RoundObservation(round.Pages, _lastSend.Bytes, _lastSend.Duration, _acks.Now - _lastHarvest,
                        round.Trackers.ToDictionary(t => t.Tracker, t => t.PagesReported))
                    {
                        VcpuDirtyRates = _vcpuRates?.Sample() ?? [],
                    });
                    _lastHarvest = _acks.Now;
                    decision = Overrule(decision, _acks.Now - started);
                    decision = PostCopyOrNot(decision);
                    _decision = decision;
                    if (decision.Action == PreCopyAction.Abort)
                    {
                        throw new MigrationException(MigrationPhase.PreCopy, $"the pre-copy controller gave up: {decision.Reason}");
                    }

                    if (decision.Action is PreCopyAction.StopCopy or PreCopyAction.PostCopy)
                    {
                        // Not sent: its pages go back to the shared bitmap (a manual-protect tracker kept them logged
                        // too), so the final harvest after the pause reports them with whatever was written since.
                        round.PutBack();
                        _faultsPutBack = retries + Faults(round);
                        return;
                    }

                    MigrationRound sent = await SendAsync(round, MigrationPhase.PreCopy, retries, waitForApplied: true).ConfigureAwait(false);
                    _lastSend = ((ulong)sent.BytesSent, sent.Send);
                }
            }
        }

        /// <summary>The session's own reasons to switch over, above the controller's: the time limit, a wedged ring.</summary>
        private PreCopyDecision Overrule(PreCopyDecision decision, TimeSpan preCopyTime)
        {
            if (decision.Action is not (PreCopyAction.Continue or PreCopyAction.Throttle))
            {
                return decision;
            }

            if (Options.MaxPreCopyTime is { } limit && preCopyTime >= limit)
            {
                return decision with { Action = PreCopyAction.StopCopy, Reason = $"pre-copy ran {preCopyTime.TotalSeconds:F1} s, its limit {limit.TotalSeconds:F1} s: stop-copy with {decision.ExpectedDowntime.TotalMilliseconds:F0} ms expected" };
            }

            if (_session._harvester.Trackers.OfType<KvmDirtyRingTracker>().FirstOrDefault(t => t.IsWedged) is { } wedged)
            {
                // Its vCPUs stopped in their run loops with every slot marked: stop-copy sends the rest, nothing is lost.
                return decision with { Action = PreCopyAction.StopCopy, Reason = $"the dirty ring of {wedged.Name} wedged (its vCPUs cannot run in ring mode): stop-copy now" };
            }

            return decision;
        }

        /// <summary>One harvest of every tracker, run again when a tracker's failure failed the round (it was restarted and its coverage marked).</summary>
        private (HarvestRound Round, int Retries) Harvest(bool final)
        {
            for (int retries = 0; ; retries++)
            {
                Token.ThrowIfCancellationRequested();
                FollowRegions();
                try
                {
                    HarvestRound round = final
                        ? _session._harvester.RunFinalRound(Options.FinalHarvestDeadline, Token) // no re-protection for a paused guest
                        : _session._harvester.RunRound(null, Token);
                    return (round, retries);
                }
                catch (HarvestException) when (retries < Options.RoundRetries)
                {
                    // Nothing is lost by running it again: the failed tracker's coverage is in the shared bitmap.
                }
            }
        }

        /// <summary>
        /// Sends a harvested round and commits it once sent and (before stop-copy) applied; a failure before the commit
        /// leaves it to the caller's <c>using</c>, which puts it back.
        /// </summary>
        private async Task<MigrationRound> SendAsync(HarvestRound round, MigrationPhase phase, int retries, bool waitForApplied)
        {
            // Other consumers get the round before it is sent: the send re-protects its pages chunk by chunk, and the
            // round leaves the shared bitmap when committed.
            Options.Consumers?.Publish(round.Runs);
            TimeSpan start = _acks.Now;
            long bytes = await _writer.WriteRoundAsync(round, Token).ConfigureAwait(false);
            TimeSpan applied = waitForApplied ? await _acks.WaitForRoundAsync(_writer.Rounds, Token).ConfigureAwait(false) : _acks.Now;
            round.Commit();
            var sent = new MigrationRound(_session._rounds.Count + 1, phase, round.Pages, bytes, round.Duration, applied - start, retries, round.Trackers)
            {
                TrackerFaults = retries + Faults(round) + _faultsPutBack,
            };
            _faultsPutBack = 0;
            Record(sent);
            return sent;
        }

        private static int Faults(HarvestRound round) => round.Trackers.Count(t => t.Outcome != TrackerRoundOutcome.Read);

        private void Record(MigrationRound round)
        {
            _session._rounds.Add(round);
            MigrationTelemetry.RoundSent(round);
            Report(_phase, round);
        }
    }
}
