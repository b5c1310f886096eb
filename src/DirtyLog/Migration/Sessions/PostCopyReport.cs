// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration.Sessions;

/// <summary>What post-copy did, on one side, as QEMU reports it (its postcopy-blocktime included).</summary>
/// <remarks>Thread safety: immutable.</remarks>
public sealed record PostCopyReport
{
    /// <summary>Pages the destination did not hold at the switch: written after pre-copy sent them (the discard list).</summary>
    public ulong DiscardedPages { get; init; }

    /// <summary>Pages the destination asked for because a thread touched them (source: answered).</summary>
    public ulong PagesRequested { get; init; }

    /// <summary>Pages the source pushed on the data connections (destination: arrived there).</summary>
    public ulong PagesPushed { get; init; }

    /// <summary>
    /// Destination: pages that arrived when they were installed already (requested while their push was on its way,
    /// or asked again after a recovery), and were left as they were; zero on the source.
    /// </summary>
    public ulong PagesArrivedTwice { get; init; }

    /// <summary>Destination: from a request to its page installed, the median; zero on the source and before any request.</summary>
    public TimeSpan RequestLatencyMedian { get; init; }

    /// <summary>Destination: the 99th percentile of the same.</summary>
    public TimeSpan RequestLatencyP99 { get; init; }

    /// <summary>Destination: the time the guest's threads spent waiting for missing pages, summed over their faults.</summary>
    public TimeSpan BlockedTime { get; init; }

    /// <summary>From the guest's resume at the destination to the last page there (or to the failure).</summary>
    public TimeSpan Duration { get; init; }

    /// <summary>
    /// Whether every page reached the destination. <see langword="false"/> after a failure in post-copy: the guest runs
    /// at the destination with pages that only the source holds, and the source must keep its memory.
    /// </summary>
    public bool Complete { get; init; }

    /// <summary>How many times post-copy lost a connection and carried on over new ones.</summary>
    public int Recoveries { get; init; }

    /// <summary>One line, the sample's and the logs': pages requested and pushed, the request latency and the time blocked.</summary>
    public override string ToString() =>
        $"post-copy: {PagesRequested:N0} pages requested, {PagesPushed:N0} pushed, request latency median {RequestLatencyMedian.TotalMilliseconds:F2} ms, p99 {RequestLatencyP99.TotalMilliseconds:F2} ms, blocked {BlockedTime.TotalMilliseconds:F0} ms{(Recoveries == 0 ? "" : $", recovered {Recoveries} {(Recoveries == 1 ? "time" : "times")}")}";
}
