// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Tracking;

/// <summary>
/// A tracker that can report pages without re-protecting them, and re-protect them later, range by range, just before
/// the consumer reads their contents: KVM's dirty log in manual-protect mode (<c>KVM_CLEAR_DIRTY_LOG</c> per chunk), as
/// QEMU does. A page written after the round's read but before its chunk is sent is then sent once, with that write,
/// instead of again in the next round.
/// </summary>
/// <remarks>
/// Why it is safe: a range is re-protected, then its memory is read and sent. A write before the re-protection is in
/// what is sent; a write after it is logged again. A page the round reported but never sends stays logged, so the
/// next round reports it again. Thread safety: as the tracker's reads.
/// </remarks>
public interface IClearBeforeSend
{
    /// <summary>Whether reads can leave the pages logged for <see cref="ClearBeforeSend"/> (manual protect, for KVM).</summary>
    bool CanClearBeforeSend { get; }

    /// <summary>
    /// Re-protects the pages of <paramref name="range"/> (guest-physical), which the caller is about to read and send;
    /// outside the tracker's coverage, or while it is not tracking, it does nothing.
    /// </summary>
    /// <param name="range">The range about to be sent.</param>
    void ClearBeforeSend(AddressRange range);
}
