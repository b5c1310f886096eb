// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Consumers;
using DirtyLog.Migration;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>One link of the snapshot demo's chain and what taking it cost.</summary>
/// <param name="Path">Its file.</param>
/// <param name="Summary">What it holds.</param>
/// <param name="GuestChanged">Pages of the guest's working set changed since the previous link.</param>
/// <param name="Resident">Resident guest pages at the link (what a mincore-style snapshot would copy).</param>
/// <param name="DirtyRate">The dirty-rate consumer's sample at this link: what the guest dirtied since the previous one.</param>
/// <param name="PauseMs">The vCPU's pause for the link: the harvest and the copy, or the harvest and the protection.</param>
/// <param name="WriteMs">With write protection: the link's write after the vCPU resumed.</param>
/// <param name="WritesWaited">With write protection: the guest's writes that reached a protected page and waited.</param>
/// <param name="CopiedOnWrite">With write protection: pages copied out of order because a write waited on them.</param>
/// <param name="GuestPagesPerSecondWhileWriting">With write protection: the guest's pace (pages written per second) from its resume until the link was written.</param>
/// <param name="GuestPagesPerSecond">The guest's pace while nothing held it: from the previous link's resume (or the end of its write) to this link's pause; 0 for the first link.</param>
internal sealed record LinkReport(string Path, PageStreamSummary Summary, ulong GuestChanged, ulong Resident, DirtyRateSample DirtyRate, double PauseMs,
    double? WriteMs, long WritesWaited, long CopiedOnWrite, double GuestPagesPerSecondWhileWriting, double GuestPagesPerSecond)
{
    /// <summary>The pause, and with write protection what the write after it cost the guest.</summary>
    public string Timing() => WriteMs is not { } write
        ? $"vCPU paused {PauseMs:F1} ms" + (GuestPagesPerSecond > 0 ? $" (the guest's pace before it {GuestPagesPerSecond:N0} pages/s)" : "")
        : $"vCPU paused {PauseMs:F1} ms, then written in {write:F1} ms while the guest ran: {WritesWaited:N0} of its writes waited ({CopiedOnWrite:N0} pages copied first for them), " +
          $"its pace {GuestPagesPerSecondWhileWriting:N0} pages/s meanwhile" + (GuestPagesPerSecond > 0 ? $" ({GuestPagesPerSecond:N0} unhindered before this link)" : "");
}
