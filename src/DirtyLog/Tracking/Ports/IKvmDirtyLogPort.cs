// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking.Ports;

/// <summary>
/// KVM's per-slot dirty bitmap, as <see cref="KvmDirtyLogTracker"/> reads it: <c>KVM_GET_DIRTY_LOG</c> and, in manual
/// protect mode, <c>KVM_CLEAR_DIRTY_LOG</c>.
/// </summary>
/// <remarks>
/// The rules every implementation keeps, as KVM does: GET fails with <c>ENOENT</c> on a slot that is not logging;
/// classic GET returns the bits and clears them (re-protecting the pages), manual GET only copies them; CLEAR
/// clears and re-protects exactly the pages whose bits it is given, from a first page that is a multiple of 64, over
/// a multiple of 64 pages unless the range ends at the slot's end (<c>EINVAL</c> otherwise).
/// <para>Thread safety: implementations are thread-safe: several trackers (one per slot, or a VM-wide one and a slot's) may read one port at once; each slot's GET and CLEAR come from the one tracker that owns the slot's log, one at a time.</para>
/// </remarks>
public interface IKvmDirtyLogPort : IKvmSlotPort
{
    /// <summary>Whether the VM enabled <c>KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2</c>.</summary>
    bool ManualProtect { get; }

    /// <summary><c>KVM_GET_DIRTY_LOG</c>: writes every word of the slot's bitmap.</summary>
    /// <param name="slotId">The slot.</param>
    /// <param name="bitmap">At least ceil(pages / 64) words; bit i is page i of the slot.</param>
    void GetDirtyLog(uint slotId, Span<ulong> bitmap);

    /// <summary><c>KVM_CLEAR_DIRTY_LOG</c>: clears and re-protects the pages whose bits are set.</summary>
    /// <param name="slotId">The slot.</param>
    /// <param name="firstPage">A multiple of 64.</param>
    /// <param name="pageCount">A multiple of 64, unless the range ends at the slot's end.</param>
    /// <param name="bitmap">Bit i: page <paramref name="firstPage"/> + i.</param>
    void ClearDirtyLog(uint slotId, ulong firstPage, uint pageCount, ReadOnlySpan<ulong> bitmap);
}
