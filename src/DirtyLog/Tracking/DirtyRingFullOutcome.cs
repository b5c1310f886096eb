// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Tracking;

/// <summary>What a VMM's run loop does after <see cref="KvmDirtyRingTracker.HandleRingFull"/>.</summary>
public enum DirtyRingFullOutcome
{
    /// <summary>The rings were reaped: run the vCPU again.</summary>
    Reaped,

    /// <summary>
    /// The ring is wedged: KVM answers ring-full with nothing to harvest and will not enter the guest again. Every slot
    /// was marked dirty; stop the VM, finish with stop-and-copy, and use the dirty bitmap for the next VM.
    /// </summary>
    Wedged,
}
