// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Harvesting;

/// <summary>How a <see cref="ParallelHarvester"/> runs its rounds.</summary>
/// <remarks>Thread safety: immutable once built (init-only); safe to share between harvesters and threads.</remarks>
public sealed record HarvesterOptions
{
    /// <summary>
    /// Whether rounds attribute pages to trackers (<see cref="TrackerRoundReport.ExclusivePages"/>,
    /// <see cref="HarvestRound.PagesSeenBySeveral"/>). Each tracker then reads into a bitmap of its own before the
    /// shared one, which costs one more pass over its pages. On by default: knowing which writer keeps the guest from
    /// converging is worth it outside stop-copy.
    /// </summary>
    public bool Attribution { get; init; } = true;

    /// <summary>
    /// Whether <see cref="ParallelHarvester.StartTracking"/> reads every tracker it started once, into the shared
    /// bitmap, so that the first round does not pay for the first use of each read path (JIT, a worker thread's first
    /// run, a tracker's buffers): on one KVM slot the first round cost about 28 ms against 0.2 ms for the next ones,
    /// and about 3 ms with this. Lossless, but observable: the pages of that read reach the first round unattributed,
    /// and a tracker that fails in it is faulted when the first round reads it. <c>StartTracking</c> waits up to a
    /// second for these reads; the first round waits for any still running before its own. Off by default.
    /// </summary>
    public bool ReadOnStart { get; init; }

    /// <summary>
    /// Whether rounds leave the pages of trackers that can (<see cref="Tracking.IClearBeforeSend"/>: KVM in manual
    /// protect mode) logged, to be re-protected chunk by chunk just before they are sent
    /// (<see cref="HarvestRound.ClearBeforeSend"/>, which <c>PageStreamWriter.WriteRoundAsync(HarvestRound, ...)</c>
    /// calls), as QEMU does: a page written between the round and its chunk's send goes once, not again in the next
    /// round. The consumer must re-protect before it reads a page, or the page stays logged (sent again later, never
    /// lost). Off by default.
    /// </summary>
    public bool ClearBeforeSend { get; init; }
}
