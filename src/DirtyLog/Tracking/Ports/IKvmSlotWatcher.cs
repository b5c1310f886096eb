// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Native;

namespace DirtyLog.Tracking.Ports;

/// <summary>
/// Hears of a VM's memory slots coming and going while it watches (<see cref="IKvmSlotPort.WatchSlots"/>): how the
/// KVM trackers follow memory hotplug and unplug, and slots moved or resized (a removal, then an addition), during a
/// migration.
/// </summary>
/// <remarks>
/// Thread safety: calls come from the thread that changes the slot table, one change at a time, and may take the watcher's own locks;
/// the port holds none of its own locks that a read takes while it calls (see <see cref="KvmVmPort"/> for the order).
/// </remarks>
public interface IKvmSlotWatcher
{
    /// <summary>
    /// A slot was added (it is in the table already). A tracker that is tracking starts logging it and reports it
    /// entirely dirty: none of it was ever sent.
    /// </summary>
    /// <param name="slot">The new slot.</param>
    void OnSlotAdded(KvmMemorySlot slot);

    /// <summary>
    /// A slot is about to be removed (it is still in the table, and still in KVM). A tracker that is tracking harvests
    /// it now and keeps its pages for its next read, so that nothing written to it is lost.
    /// </summary>
    /// <param name="slot">The slot going away.</param>
    void OnSlotRemoving(KvmMemorySlot slot);
}
