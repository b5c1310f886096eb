// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.Versioning;
using DirtyLog.Native;

namespace DirtyLog.Tracking.Ports;

/// <summary>The real <see cref="IIommuDirtyPort"/>: one HWPT of an open <see cref="IommufdContext"/>.</summary>
/// <remarks>
/// <para>Does not own the iommufd; the HWPT must have been allocated with dirty tracking.</para>
/// <para>Thread safety: every call is one ioctl on the iommufd, which the kernel serialises per HWPT; the tracker calls it one at a time.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed class IommufdDirtyPort : IIommuDirtyPort
{
    private readonly IommufdContext _iommufd;
    private readonly uint _hwptId;

    /// <summary>Creates the port and reads the IOAS's IOVA alignment.</summary>
    /// <param name="iommufd">The open iommufd.</param>
    /// <param name="ioasId">The IOAS the HWPT was allocated over.</param>
    /// <param name="hwptId">The HWPT, allocated with <c>IOMMU_HWPT_ALLOC_DIRTY_TRACKING</c>.</param>
    /// <exception cref="KernelException">The IOAS does not exist.</exception>
    public IommufdDirtyPort(IommufdContext iommufd, uint ioasId, uint hwptId)
    {
        ArgumentNullException.ThrowIfNull(iommufd);
        _iommufd = iommufd;
        _hwptId = hwptId;
        IoAddressSpaceId = ioasId;
        iommufd.GetIovaRanges(ioasId, out ulong alignment);
        IovaAlignment = alignment;
    }

    /// <inheritdoc/>
    public string Name => $"hwpt{_hwptId}";

    /// <inheritdoc/>
    public uint IoAddressSpaceId { get; }

    /// <inheritdoc/>
    public ulong IovaAlignment { get; }

    /// <inheritdoc/>
    public void SetDirtyTracking(bool enable) => _iommufd.SetDirtyTracking(_hwptId, enable);

    /// <inheritdoc/>
    public void GetDirtyBitmap(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap, bool noClear) =>
        _iommufd.GetDirtyBitmap(_hwptId, iova, length, pageSize, bitmap, noClear);
}
