// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Testing;

/// <summary>Why an emulated vCPU's run of writes returned.</summary>
public enum EmulatedVcpuExit
{
    /// <summary>Every write was done.</summary>
    Completed,

    /// <summary>
    /// <c>KVM_EXIT_DIRTY_RING_FULL</c>: the vCPU's ring holds its soft limit; the run loop must reap before running again
    /// (the writes not yet done are the rest of the batch).
    /// </summary>
    DirtyRingFull,
}
