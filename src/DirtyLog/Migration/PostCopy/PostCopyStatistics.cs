// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration.PostCopy;

/// <summary>What a post-copy destination has done so far, as QEMU reports it (its postcopy-blocktime included).</summary>
/// <param name="PagesRequested">Pages asked of the source because a thread touched them.</param>
/// <param name="PagesInstalled">Pages installed from the source's bytes, requested or pushed.</param>
/// <param name="PagesArrivedTwice">Pages that arrived once they were installed already (requested and pushed at once): left as they were.</param>
/// <param name="ZeroPagesFilled">Valid zero pages a thread touched before memory was there: filled here with no request.</param>
/// <param name="MissingPages">Pages not valid here yet.</param>
/// <param name="RequestLatencyMedian">From a request to its page installed, the median; zero before any.</param>
/// <param name="RequestLatencyP99">The 99th percentile of the same.</param>
/// <param name="BlockedTime">The time faulting threads spent waiting for missing pages, summed over the faults read.</param>
/// <remarks>Thread safety: an immutable value.</remarks>
public readonly record struct PostCopyStatistics(
    ulong PagesRequested,
    ulong PagesInstalled,
    ulong PagesArrivedTwice,
    ulong ZeroPagesFilled,
    ulong MissingPages,
    TimeSpan RequestLatencyMedian,
    TimeSpan RequestLatencyP99,
    TimeSpan BlockedTime);
