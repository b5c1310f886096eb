// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Tracking.Ports;

/// <summary>Who sets <c>KVM_MEM_LOG_DIRTY_PAGES</c> on the memory slots of a VM the KVM trackers read.</summary>
public enum DirtyLoggingControl
{
    /// <summary>
    /// DirtyLog sets and clears it when tracking starts and stops (and on slots added while tracking), with
    /// <c>KVM_SET_USER_MEMORY_REGION</c> and the slot's declared guest address, size and host address. The VMM must not
    /// change the slot meanwhile without telling the port.
    /// </summary>
    ByDirtyLog,

    /// <summary>
    /// The VMM sets it itself, before tracking starts, on every slot it declares with
    /// <see cref="Native.KvmMemorySlot.LogDirtyPages"/> set; DirtyLog never issues <c>KVM_SET_USER_MEMORY_REGION</c>.
    /// Starting a tracker over a slot declared without it fails, naming the slot, instead of missing its writes.
    /// </summary>
    ByVmm,
}
