// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native;

/// <summary>A page fault read from a synchronous userfaultfd (<see cref="UserfaultfdContext.ReadFaults"/>).</summary>
/// <param name="Address">The faulting address (the kernel rounds it down to its page unless asked for the exact one).</param>
/// <param name="IsWrite">The access was a write.</param>
/// <param name="IsWriteProtect">The fault is on a write-protected page (rather than a missing one).</param>
/// <param name="ThreadId">The faulting thread's id, when the kernel reports it (<c>UFFD_FEATURE_THREAD_ID</c>); 0 otherwise.</param>
/// <remarks>Thread safety: an immutable value.</remarks>
public readonly record struct UserfaultfdFault(ulong Address, bool IsWrite, bool IsWriteProtect, uint ThreadId);
