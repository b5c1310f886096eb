// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Native;

namespace DirtyLog.Tracking.Ports;

/// <summary>
/// KVM's per-vCPU dirty rings, as <see cref="KvmDirtyRingTracker"/> reads them: each ring's harvest (entries in push
/// order, each handed back for reset) and the VM-wide <c>KVM_RESET_DIRTY_RINGS</c>.
/// </summary>
/// <remarks>
/// The rules every implementation keeps, as KVM does: a page is pushed once when first written after its slot started
/// logging or after the reset of its last entry (the write re-protects nothing until the reset); a harvest returns the
/// entries pushed since the last harvest of that ring, in order, and marks them for reset; a reset recycles the marked
/// entries and re-protects their pages; a vCPU whose ring holds its soft limit (entries minus KVM's reserve) exits with
/// <c>KVM_EXIT_DIRTY_RING_FULL</c> before entering the guest again. One harvester at a time per ring.
/// <para>Thread safety: implementations are thread-safe; the ring tracker makes sure one harvester at a time walks a ring (its reaper, its reads and the run loop's ring-full call share one lock).</para>
/// </remarks>
public interface IKvmDirtyRingPort : IKvmSlotPort
{
    /// <summary>Entries per ring.</summary>
    uint RingEntries { get; }

    /// <summary>Rings (one per vCPU) this port reads.</summary>
    int RingCount { get; }

    /// <summary>Harvests one ring: every entry pushed since its last harvest, in order, each marked for reset.</summary>
    /// <typeparam name="TVisitor">The visitor's type: a struct, whose calls are inlined.</typeparam>
    /// <param name="ring">The ring, 0 to <see cref="RingCount"/> - 1.</param>
    /// <param name="visitor">Receives (slot field, page offset in the slot) per entry.</param>
    /// <returns>The number of entries harvested.</returns>
    int HarvestRing<TVisitor>(int ring, ref TVisitor visitor)
        where TVisitor : struct, IDirtyRingVisitor;

    /// <summary>
    /// Brings one ring's harvest back in step after an overflow: a vCPU that pushed more than a lap (KVM warns and
    /// pushes anyway) leaves entries that KVM counts as pushed but that its reset recycled, and the harvest would stop
    /// at them for ever. Skips them (marking them for reset) when live entries show behind them.
    /// </summary>
    /// <param name="ring">The ring, 0 to <see cref="RingCount"/> - 1.</param>
    /// <returns>The entries skipped; 0 when the ring is in step.</returns>
    int SkipRecycledEntries(int ring);

    /// <summary><c>KVM_RESET_DIRTY_RINGS</c>: recycles every harvested entry of every ring and re-protects its page.</summary>
    /// <returns>What the kernel returns: the entries reset.</returns>
    int ResetDirtyRings();
}
