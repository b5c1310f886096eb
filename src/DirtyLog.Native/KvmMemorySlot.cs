// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native;

/// <summary>A KVM memory slot: guest-physical range, the host memory behind it, and whether dirty logging is on.</summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
/// <param name="Id">The slot id (<c>as_id &lt;&lt; 16 | slot</c>).</param>
/// <param name="GuestAddress">The first guest-physical byte.</param>
/// <param name="Size">Bytes, a multiple of 4096.</param>
/// <param name="HostAddress">The host virtual address of the backing memory.</param>
/// <param name="LogDirtyPages">Whether <c>KVM_MEM_LOG_DIRTY_PAGES</c> is set.</param>
public sealed record KvmMemorySlot(uint Id, ulong GuestAddress, ulong Size, ulong HostAddress, bool LogDirtyPages)
{
    /// <summary>4 KiB pages in the slot.</summary>
    public ulong Pages => Size / 4096;
}
