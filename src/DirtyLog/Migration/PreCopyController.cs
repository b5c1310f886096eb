// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;

namespace DirtyLog.Migration;

/// <summary>
/// Decides after each pre-copy round whether to copy on, switch over to stop-copy, throttle the guest or give up,
/// from the measured dirty rate and bandwidth.
/// </summary>
/// <remarks>
/// <para>In this order: switch over when the expected downtime (bytes still dirty / measured bandwidth) fits
/// <see cref="PreCopyOptions.DowntimeLimit"/>, unless the rounds still converge fast
/// (<see cref="PreCopyOptions.KeepCopyingWhileShrinkingTo"/>, off by default) and the round budget allows; switch over
/// when the round budget is spent; when the dirty set has not
/// reached a new minimum for <see cref="PreCopyOptions.StallRounds"/> rounds, apply the stall policy (force stop-copy,
/// abort, or ask the throttle callback and start counting again); otherwise copy on. With
/// <see cref="PreCopyOptions.SwitchToPostCopy"/>, a spent budget or a stall (under any policy but abort) switches to
/// post-copy instead: the guest then runs at the destination at once, and no stop-copy over the limit happens.</para>
/// <para>Bandwidth is the last round's bytes over its send time (the link and the destination change; an old average
/// would lie); before any byte was sent it is unknown and only the budget and the stall rule can switch over.</para>
/// <para>Not thread-safe: one migration loop calls it.</para>
/// </remarks>
public sealed class PreCopyController
{
    private readonly Action<ThrottleRequest>? _throttle;
    private readonly List<PreCopyDecision> _history = [];
    private ulong _smallest = ulong.MaxValue;
    private ulong? _previousPages;
    private int _roundsWithoutProgress;

    /// <summary>Creates a controller.</summary>
    /// <param name="options">The limits; defaults when omitted.</param>
    /// <param name="throttle">Called when the stall policy is <see cref="StallPolicy.Throttle"/>.</param>
    /// <exception cref="ArgumentException">The policy is to throttle but no callback is given.</exception>
    public PreCopyController(PreCopyOptions? options = null, Action<ThrottleRequest>? throttle = null)
    {
        Options = options ?? new PreCopyOptions();
        Options.Validate();
        if (Options.StallPolicy == StallPolicy.Throttle && throttle is null)
        {
            throw new ArgumentException("The stall policy is to throttle, but no throttle callback was given.", nameof(throttle));
        }

        _throttle = throttle;
    }

    /// <summary>The limits.</summary>
    public PreCopyOptions Options { get; }

    /// <summary>Bytes per second, as last measured; 0 before any.</summary>
    public double Bandwidth { get; private set; }

    /// <summary>Every decision so far, in order.</summary>
    public IReadOnlyList<PreCopyDecision> History => _history;

    /// <summary>Pages per second per tracker in the last round that reported them.</summary>
    public IReadOnlyDictionary<string, double> TrackerRates { get; private set; } = new Dictionary<string, double>();

    /// <summary>Takes one round's figures and decides.</summary>
    /// <param name="round">The round.</param>
    /// <returns>The decision.</returns>
    /// <exception cref="InvalidOperationException">A final decision (stop-copy, post-copy or abort) was already given.</exception>
    /// <remarks>
    /// An observation that throws (the throttle callback's exception is let through) changes nothing: the bandwidth,
    /// rates, stall count and history are updated only once the decision stands. An expected downtime too long for a
    /// <see cref="TimeSpan"/> (a stalled link) saturates at <see cref="TimeSpan.MaxValue"/>.
    /// </remarks>
    public PreCopyDecision Observe(RoundObservation round)
    {
        ArgumentNullException.ThrowIfNull(round);
        if (_history.Count > 0 && _history[^1].Action is PreCopyAction.StopCopy or PreCopyAction.Abort or PreCopyAction.PostCopy)
        {
            throw new InvalidOperationException($"Pre-copy already ended with {_history[^1].Action}.");
        }

        // Everything is computed into locals first and committed at the end.
        int number = _history.Count + 1;
        double bandwidth = round.BytesSent > 0 && round.SendDuration > TimeSpan.Zero
            ? round.BytesSent / round.SendDuration.TotalSeconds
            : Bandwidth;

        double seconds = Math.Max(round.Interval.TotalSeconds, 1e-9);
        double dirtyRate = round.DirtyPages / seconds;
        IReadOnlyDictionary<string, double> trackerRates = round.PagesPerTracker is null
            ? TrackerRates
            : round.PagesPerTracker.ToDictionary(p => p.Key, p => p.Value / seconds);

        double dirtyBytes = (double)round.DirtyPages * Options.PageSize;
        TimeSpan expected = bandwidth > 0 ? Saturating(dirtyBytes / bandwidth) : TimeSpan.MaxValue;

        ulong smallest = _smallest;
        int roundsWithoutProgress = _roundsWithoutProgress;
        if (round.DirtyPages < smallest)
        {
            smallest = round.DirtyPages;
            roundsWithoutProgress = 0;
        }
        else
        {
            roundsWithoutProgress++;
        }

        PreCopyDecision decision;
        if (expected <= Options.DowntimeLimit && number < Options.MaxRounds && expected > Options.DowntimeGoal
            && _previousPages is { } previous && previous > 0 && round.DirtyPages <= previous * Options.KeepCopyingWhileShrinkingTo)
        {
            decision = Decide(PreCopyAction.Continue, $"expected downtime {Ms(expected)} fits the limit of {Ms(Options.DowntimeLimit)}, but the dirty set shrank to {round.DirtyPages / (double)previous:P0} of the last round's: one more round");
        }
        else if (expected <= Options.DowntimeLimit)
        {
            decision = Decide(PreCopyAction.StopCopy, $"expected downtime {Ms(expected)} fits the limit of {Ms(Options.DowntimeLimit)}");
        }
        else if (number >= Options.MaxRounds)
        {
            decision = Options.SwitchToPostCopy
                ? Decide(PreCopyAction.PostCopy, $"round budget of {Options.MaxRounds} spent with expected downtime {Ms(expected)} over the limit of {Ms(Options.DowntimeLimit)}: switching to post-copy")
                : Decide(PreCopyAction.StopCopy, $"round budget of {Options.MaxRounds} spent (expected downtime {Ms(expected)})");
        }
        else if (roundsWithoutProgress >= Options.StallRounds && Options.SwitchToPostCopy && Options.StallPolicy != StallPolicy.Abort)
        {
            decision = Decide(PreCopyAction.PostCopy, $"the dirty set has not shrunk below {smallest:N0} pages for {roundsWithoutProgress} rounds: pre-copy does not converge, switching to post-copy (expected downtime {Ms(expected)})");
        }
        else if (roundsWithoutProgress >= Options.StallRounds)
        {
            string stalled = $"the dirty set has not shrunk below {smallest:N0} pages for {roundsWithoutProgress} rounds";
            switch (Options.StallPolicy)
            {
                case StallPolicy.ForceStopCopy:
                    decision = Decide(PreCopyAction.StopCopy, $"{stalled}: forcing stop-copy (expected downtime {Ms(expected)})");
                    break;
                case StallPolicy.Abort:
                    decision = Decide(PreCopyAction.Abort, $"{stalled}: aborting");
                    break;
                case StallPolicy.Throttle:
                    _throttle!(new ThrottleRequest(number, dirtyRate, bandwidth, trackerRates) { VcpuDirtyRates = round.VcpuDirtyRates });
                    roundsWithoutProgress = 0; // give the throttle time to act
                    decision = Decide(PreCopyAction.Throttle, $"{stalled}: throttling the guest");
                    break;
                default:
                    throw new InvalidOperationException($"Stall policy {Options.StallPolicy} is not defined."); // Validate refuses it
            }
        }
        else
        {
            decision = Decide(PreCopyAction.Continue, $"expected downtime {Ms(expected)} is over the limit of {Ms(Options.DowntimeLimit)}");
        }

        Bandwidth = bandwidth;
        TrackerRates = trackerRates;
        _smallest = smallest;
        _roundsWithoutProgress = roundsWithoutProgress;
        _previousPages = round.DirtyPages;
        _history.Add(decision);
        return decision;

        PreCopyDecision Decide(PreCopyAction action, string reason) => new(action, reason, number, expected, dirtyRate, bandwidth);
    }

    /// <summary>Seconds as a time span, <see cref="TimeSpan.MaxValue"/> when they do not fit one.</summary>
    private static TimeSpan Saturating(double seconds) =>
        seconds >= TimeSpan.MaxValue.TotalSeconds || double.IsNaN(seconds) ? TimeSpan.MaxValue : TimeSpan.FromSeconds(seconds);

    private static string Ms(TimeSpan t) => t == TimeSpan.MaxValue ? "unknown (no bandwidth measured yet, or a stalled link)" : $"{t.TotalMilliseconds:F0} ms";
}
