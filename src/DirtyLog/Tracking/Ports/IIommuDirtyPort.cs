// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking.Ports;

/// <summary>
/// The dirty-tracking facility of one iommufd hardware page table (HWPT): what <see cref="IommuTracker"/> needs of
/// the kernel, and nothing more. Implemented over <c>/dev/iommu</c> by <see cref="IommufdDirtyPort"/> and by the
/// emulator (<c>EmulatedHwpt</c> in the DirtyLog.Testing package); the tracker is the same over both.
/// </summary>
/// <remarks>
/// <para>Implementations follow the kernel's rules: errors surface as <c>KernelException</c> with the kernel's errno.</para>
/// <para>Thread safety: the tracker serialises its calls (one enable, disable or bitmap read at a time). A port shared by several trackers is called by them at once and must be thread-safe, as the kernel is per HWPT.</para>
/// </remarks>
public interface IIommuDirtyPort
{
    /// <summary>A name for diagnostics, such as <c>hwpt7</c>.</summary>
    string Name { get; }

    /// <summary>The IO address space whose IOVAs the HWPT translates.</summary>
    uint IoAddressSpaceId { get; }

    /// <summary>The IOVA alignment every query must respect (the IOAS's <c>out_iova_alignment</c>).</summary>
    ulong IovaAlignment { get; }

    /// <summary><c>IOMMU_HWPT_SET_DIRTY_TRACKING</c>; enabling starts a clean epoch.</summary>
    /// <param name="enable">Enable or disable.</param>
    void SetDirtyTracking(bool enable);

    /// <summary><c>IOMMU_HWPT_GET_DIRTY_BITMAP</c>: ORs dirty bits into <paramref name="bitmap"/>; stops silently at an unmapped hole.</summary>
    /// <param name="iova">The first byte, aligned.</param>
    /// <param name="length">Bytes, aligned.</param>
    /// <param name="pageSize">Bytes per bit.</param>
    /// <param name="bitmap">Receives the bits; never cleared by the callee.</param>
    /// <param name="noClear">Leave the dirty bits set.</param>
    void GetDirtyBitmap(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap, bool noClear);
}
