// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;

namespace DirtyLog.Tracking;

/// <summary>
/// One source of dirty pages: an IOMMU hardware page table (iommufd), a device's own DMA logger (VFIO), KVM's
/// dirty log or dirty ring, or userfaultfd write-protect. The harvester and the correlator see trackers only
/// through this interface.
/// </summary>
/// <remarks>
/// <para><b>Address space and granularity.</b> A tracker reports byte ranges of its <see cref="AddressSpace"/>
/// (guest-physical, or one IO address space's IOVA) at the granularity of <see cref="PageSize"/>, the page size
/// actually granted (a device may raise the one asked for). A read marks every page of the target bitmap that a
/// dirty granule covers.</para>
/// <para><b>Life cycle.</b> <see cref="StartTracking"/> and <see cref="StopTracking"/> are idempotent. <see cref="StopTracking"/> is safe
/// in every state, including after a failed start or read, and must be called after a failure: a tracker left
/// logging after a failed migration blocks the next start. A failed read moves the tracker to
/// <see cref="DirtyTrackerState.Faulted"/>; the caller must then treat <see cref="Coverage"/> as dirty.</para>
/// <para><b>Concurrency.</b> Reads of different trackers may run at the same time. On one tracker, calls are
/// serialised by the tracker: a read, a start and a stop never overlap (a second caller waits). The writers the
/// tracker observes (vCPUs, DMA) keep running during a read; a write racing a read is reported by that read or the
/// next one.</para>
/// <para><b>Thread safety.</b> Every member may be called from any thread. Calls on one tracker are serialised by the tracker (a read waits for a start, stop or another read of the same tracker); different trackers may be read at once, which is what the harvester does.</para>
/// </remarks>
public interface IDirtyTracker : IDisposable
{
    /// <summary>A name for diagnostics and metrics, such as <c>iommu:hwpt7</c>.</summary>
    string Name { get; }

    /// <summary>The address space of <see cref="Coverage"/> and of what reads report.</summary>
    DirtyAddressSpace AddressSpace { get; }

    /// <summary>Bytes per dirty granule: the page size granted (valid once started; the requested one before).</summary>
    long PageSize { get; }

    /// <summary>The byte ranges tracked, in <see cref="AddressSpace"/>, sorted and disjoint.</summary>
    IReadOnlyList<AddressRange> Coverage { get; }

    /// <summary>Whether <see cref="DirtyReadMode.NoClear"/> reads are supported.</summary>
    bool CanReadWithoutClear { get; }

    /// <summary>The life-cycle state.</summary>
    DirtyTrackerState State { get; }

    /// <summary>Starts logging. Starting a started tracker does nothing.</summary>
    /// <exception cref="DirtyTrackerException">The tracker could not start; nothing is left half-started.</exception>
    void StartTracking();

    /// <summary>Stops logging. Safe in every state; stopping a stopped tracker does nothing.</summary>
    void StopTracking();

    /// <summary>Reads the dirty pages of <paramref name="range"/> into <paramref name="target"/>.</summary>
    /// <param name="range">The bytes to read, in <see cref="AddressSpace"/>. Parts outside <see cref="Coverage"/> report nothing.</param>
    /// <param name="target">
    /// A bitmap of the same address space: a dirty byte address <c>a</c> marks page <c>a &gt;&gt; target.PageShift</c>.
    /// Its page size must not exceed <see cref="PageSize"/>.
    /// </param>
    /// <param name="mode">Whether to clear what is read.</param>
    /// <returns>The number of dirty granules reported.</returns>
    /// <exception cref="InvalidOperationException">The tracker is not started.</exception>
    /// <exception cref="NotSupportedException"><paramref name="mode"/> is <see cref="DirtyReadMode.NoClear"/> and the tracker cannot read without clearing.</exception>
    /// <exception cref="ArgumentException">
    /// The target's page size is larger than the tracker's, the range is not aligned to <see cref="PageSize"/>, or
    /// the part of the range the tracker covers does not fit the target's address space. Checked before anything is
    /// read: the tracker stays started and keeps its pages.
    /// </exception>
    /// <exception cref="DirtyTrackerException">The read failed; the tracker is <see cref="DirtyTrackerState.Faulted"/>.</exception>
    ulong ReadDirty(AddressRange range, SparseDirtyBitmap target, DirtyReadMode mode);

    /// <summary>Reads the dirty granules of <paramref name="range"/>, handing them to <paramref name="sink"/> chunk by chunk.</summary>
    /// <param name="range">The bytes to read, in <see cref="AddressSpace"/>, aligned to <see cref="PageSize"/>.</param>
    /// <param name="sink">Receives the chunks (for instance, the correlator translating IOVA to guest pages).</param>
    /// <param name="mode">Whether to clear what is read.</param>
    /// <returns>The number of dirty granules reported.</returns>
    /// <exception cref="InvalidOperationException">The tracker is not started.</exception>
    /// <exception cref="NotSupportedException"><paramref name="mode"/> is <see cref="DirtyReadMode.NoClear"/> and the tracker cannot read without clearing.</exception>
    /// <exception cref="ArgumentException">The range is not aligned to <see cref="PageSize"/> (checked before anything is read).</exception>
    /// <exception cref="DirtyTrackerException">
    /// The read failed, in the facility or in the sink (an exception the sink throws is wrapped here: the bits it
    /// was handed are gone from the facility); the tracker is <see cref="DirtyTrackerState.Faulted"/>.
    /// </exception>
    ulong ReadDirty(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode);
}
