// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using DirtyLog.Native;

namespace DirtyLog.Tracking.Ports;

/// <summary>
/// What the KVM trackers need of a VM's memory slots: the table, and each slot's dirty-logging flag
/// (<c>KVM_MEM_LOG_DIRTY_PAGES</c>). The base of <see cref="IKvmDirtyLogPort"/> and <see cref="IKvmDirtyRingPort"/>.
/// </summary>
/// <remarks>
/// Implemented over a real VM (<see cref="KvmVmPort"/>) and by the emulated VM of the DirtyLog.Testing package, which
/// keeps KVM's rules. Implementations are thread-safe.
/// </remarks>
public interface IKvmSlotPort
{
    /// <summary>A name for diagnostics.</summary>
    string Name { get; }

    /// <summary>A number that changes whenever the slot table changes (a cache key for decoders of ring entries).</summary>
    long SlotTableVersion { get; }

    /// <summary>The slots, as they are now.</summary>
    /// <returns>A snapshot.</returns>
    IReadOnlyList<KvmMemorySlot> GetSlots();

    /// <summary>Sets or clears <c>KVM_MEM_LOG_DIRTY_PAGES</c> on one slot; setting it write-protects the slot's pages.</summary>
    /// <param name="slotId">The slot.</param>
    /// <param name="enable">Whether to log.</param>
    void SetDirtyLogging(uint slotId, bool enable);

    /// <summary>Registers a watcher told of every slot added or removed until the registration is disposed.</summary>
    /// <param name="watcher">The watcher (a tracker).</param>
    /// <returns>The registration; disposing it stops the calls (a call in progress finishes first).</returns>
    System.IDisposable WatchSlots(IKvmSlotWatcher watcher);
}
