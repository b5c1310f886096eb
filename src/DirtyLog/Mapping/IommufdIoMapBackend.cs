// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.Versioning;
using DirtyLog.Native;
using DirtyLog.Tracking;

namespace DirtyLog.Mapping;

/// <summary>
/// The real <see cref="IIoMapBackend"/>: <c>IOMMU_IOAS_MAP</c> (at a fixed IOVA, read-write) and
/// <c>IOMMU_IOAS_UNMAP</c> on one IO address space of an iommufd the VMM lends (<see cref="IommufdContext.FromHandle"/>),
/// translating guest-physical addresses to this process's memory through the VMM's guest memory regions.
/// </summary>
/// <remarks>
/// <para>A map whose guest range spans several regions becomes one <c>IOMMU_IOAS_MAP</c> per piece; if a piece fails,
/// the pieces already mapped are unmapped before the error is rethrown, so a failed map leaves nothing behind (the
/// correlator then rolls its own state back). A guest range not wholly backed by the regions is refused before any
/// call. Like iommufd itself it cannot cut a mapping (<see cref="AllowsPartialUnmap"/> is false), and an unmap that
/// removes fewer bytes than asked is an error.</para>
/// <para>Thread safety: calls may come from any thread; the correlator serialises map changes per address space.
/// Owns neither the iommufd nor the memory.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed class IommufdIoMapBackend : IIoMapBackend
{
    private readonly IommufdContext _iommufd;
    private readonly uint _ioasId;
    private readonly HostMemoryRegion[] _regions;

    /// <summary>Creates the backend of one IO address space.</summary>
    /// <param name="iommufd">The iommufd.</param>
    /// <param name="ioasId">The IO address space (<c>IOMMU_IOAS_ALLOC</c>'s id).</param>
    /// <param name="guestMemory">Where guest memory lives in this process: non-overlapping, page-aligned regions.</param>
    /// <exception cref="ArgumentException">A region is empty, unaligned, or overlaps another in guest-physical space.</exception>
    /// <exception cref="KernelException">The IO address space does not exist (<c>IOMMU_IOAS_IOVA_RANGES</c> fails).</exception>
    public IommufdIoMapBackend(IommufdContext iommufd, uint ioasId, IEnumerable<HostMemoryRegion> guestMemory)
    {
        ArgumentNullException.ThrowIfNull(iommufd);
        ArgumentNullException.ThrowIfNull(guestMemory);
        _regions = GuestTranslation.Check(guestMemory, nameof(guestMemory));
        _iommufd = iommufd;
        _ioasId = ioasId;
        iommufd.GetIovaRanges(ioasId, out ulong alignment);
        IovaAlignment = Math.Max(alignment, 4096);
    }

    /// <inheritdoc/>
    public ulong IovaAlignment { get; }

    /// <inheritdoc/>
    public bool AllowsPartialUnmap => false;

    /// <inheritdoc/>
    /// <exception cref="ArgumentException">The guest range is not wholly backed by the regions.</exception>
    /// <exception cref="KernelException">The kernel refused a piece (EEXIST: the IOVA is mapped; EINVAL: outside the allowed ranges).</exception>
    public void Map(ulong iova, ulong guestAddress, ulong length)
    {
        var pieces = GuestTranslation.Split(_regions, guestAddress, length);
        ulong mapped = 0;
        try
        {
            foreach ((nint host, ulong pieceLength) in pieces)
            {
                _iommufd.Map(_ioasId, (ulong)host, pieceLength, iova + mapped);
                mapped += pieceLength;
            }
        }
        catch when (mapped != 0)
        {
            _iommufd.Unmap(_ioasId, iova, mapped); // each piece is its own area: the ones mapped go together
            throw;
        }
    }

    /// <inheritdoc/>
    /// <exception cref="KernelException">The kernel refused (ENOENT: nothing mapped there; EINVAL: the range cuts an area).</exception>
    /// <exception cref="InvalidOperationException">The kernel unmapped fewer bytes than asked (the range covered a hole).</exception>
    public void Unmap(ulong iova, ulong length)
    {
        ulong unmapped = _iommufd.Unmap(_ioasId, iova, length);
        if (unmapped != length)
        {
            throw new InvalidOperationException($"IOMMU_IOAS_UNMAP of [0x{iova:x} +0x{length:x}) unmapped 0x{unmapped:x} bytes: part of the range was not mapped.");
        }
    }
}
