// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Runtime.Versioning;
using DirtyLog.Native.Linux.Iommufd;
using DirtyLog.Tracking;
using static DirtyLog.Native.Linux.Iommufd.IommufdConstants;

namespace DirtyLog.Native;

/// <summary>
/// An iommufd (<c>/dev/iommu</c>): IO address spaces, hardware page tables with dirty tracking, and their dirty
/// bitmaps. A thin wrapper: one method per ioctl, kernel rules documented, every failure a <see cref="KernelException"/>.
/// </summary>
/// <remarks>
/// Thread-safe as the kernel is: calls may be issued from several threads. GET_DIRTY_BITMAP runs under the
/// IOAS's iova lock for reading and MAP/UNMAP take it for writing, so one query is atomic with respect to an unmap;
/// the order between a query and an unmap is the caller's to enforce.
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed unsafe class IommufdContext : IDisposable
{
    /// <summary>The device node of the iommufd subsystem.</summary>
    public const string DevicePath = "/dev/iommu";

    private IommufdContext(FileDescriptorHandle handle) => Handle = handle;

    /// <summary>The open descriptor (what <c>VFIO_DEVICE_BIND_IOMMUFD</c> takes).</summary>
    public FileDescriptorHandle Handle { get; }

    /// <summary>
    /// An iommufd the VMM opened, over its descriptor: owned by DirtyLog only if <paramref name="handle"/> owns it
    /// (<see cref="FileDescriptorHandle.Own"/>); a borrowed one (<see cref="FileDescriptorHandle.Borrow(System.Runtime.InteropServices.SafeHandle, string)"/>)
    /// stays the VMM's, and disposing this object leaves it open.
    /// </summary>
    /// <param name="handle">The descriptor.</param>
    /// <returns>The wrapper.</returns>
    /// <exception cref="KernelException">The descriptor is not open (EBADF).</exception>
    /// <exception cref="ArgumentException">It is open but not an iommufd (a path under <c>/dev/iommu</c>).</exception>
    public static IommufdContext FromHandle(FileDescriptorHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        handle.Require("/dev/iommu", "an iommufd");
        return new(handle);
    }

    /// <summary>Opens the iommufd.</summary>
    /// <param name="path">The device node; <see cref="DevicePath"/> unless testing.</param>
    /// <returns>The open iommufd.</returns>
    /// <exception cref="KernelException">The node is missing (ENOENT) or not accessible.</exception>
    public static IommufdContext Open(string path = DevicePath) => new(FileDescriptorHandle.Open(path));

    /// <summary><c>IOMMU_IOAS_ALLOC</c>: creates an IO address space.</summary>
    /// <returns>Its object id.</returns>
    public uint AllocateIoas()
    {
        var cmd = new iommu_ioas_alloc { size = (uint)sizeof(iommu_ioas_alloc) };
        Handle.Ioctl(IOMMU_IOAS_ALLOC, nameof(IOMMU_IOAS_ALLOC), &cmd);
        return cmd.out_ioas_id;
    }

    /// <summary><c>IOMMU_IOAS_MAP</c> with a fixed IOVA: maps <paramref name="length"/> bytes of this process's memory.</summary>
    /// <param name="ioasId">The IO address space.</param>
    /// <param name="userAddress">The process's virtual address of the memory.</param>
    /// <param name="length">Bytes to map.</param>
    /// <param name="iova">Where the mapping goes.</param>
    /// <param name="writeable">Whether DMA may write (dirty tracking only matters then).</param>
    public void Map(uint ioasId, ulong userAddress, ulong length, ulong iova, bool writeable = true)
    {
        var cmd = new iommu_ioas_map
        {
            size = (uint)sizeof(iommu_ioas_map),
            flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | (writeable ? IOMMU_IOAS_MAP_WRITEABLE : 0),
            ioas_id = ioasId,
            user_va = userAddress,
            length = length,
            iova = iova,
        };
        Handle.Ioctl(IOMMU_IOAS_MAP, nameof(IOMMU_IOAS_MAP), &cmd);
    }

    /// <summary><c>IOMMU_IOAS_UNMAP</c>: removes whole mappings; their IOPTE dirty bits go with them.</summary>
    /// <param name="ioasId">The IO address space.</param>
    /// <param name="iova">The first byte.</param>
    /// <param name="length">Bytes; the range must cover whole mappings (ENOENT otherwise).</param>
    /// <returns>The bytes actually unmapped.</returns>
    /// <remarks>Read the dirty bitmap of the range first (no-clear is enough): iommufd has no unmap-and-report.</remarks>
    public ulong Unmap(uint ioasId, ulong iova, ulong length)
    {
        var cmd = new iommu_ioas_unmap { size = (uint)sizeof(iommu_ioas_unmap), ioas_id = ioasId, iova = iova, length = length };
        Handle.Ioctl(IOMMU_IOAS_UNMAP, nameof(IOMMU_IOAS_UNMAP), &cmd);
        return cmd.length;
    }

    /// <summary><c>IOMMU_IOAS_IOVA_RANGES</c>: the IOVA ranges the address space allows, and their alignment.</summary>
    /// <param name="ioasId">The IO address space.</param>
    /// <param name="alignment">The IOVA alignment every map and dirty query must respect.</param>
    /// <returns>
    /// The allowed ranges, in the kernel's order. An IO address space with no device attached allows all 2^64 bytes:
    /// that window comes back as its two halves (see <see cref="AddressRange.FromInclusive"/>).
    /// </returns>
    public IReadOnlyList<AddressRange> GetIovaRanges(uint ioasId, out ulong alignment)
    {
        // The kernel answers EMSGSIZE with the count when the buffer is short: ask, then ask again with room.
        var ranges = new iommu_iova_range[8];
        while (true)
        {
            fixed (iommu_iova_range* p = ranges)
            {
                var cmd = new iommu_ioas_iova_ranges
                {
                    size = (uint)sizeof(iommu_ioas_iova_ranges),
                    ioas_id = ioasId,
                    num_iovas = (uint)ranges.Length,
                    allowed_iovas = (ulong)p,
                };
                try
                {
                    Handle.Ioctl(IOMMU_IOAS_IOVA_RANGES, nameof(IOMMU_IOAS_IOVA_RANGES), &cmd);
                }
                catch (KernelException e) when (e.Errno == Errno.EMSGSIZE && cmd.num_iovas > ranges.Length)
                {
                    ranges = new iommu_iova_range[cmd.num_iovas];
                    continue;
                }

                alignment = cmd.out_iova_alignment;
                var result = new List<AddressRange>((int)cmd.num_iovas);
                for (int i = 0; i < cmd.num_iovas; i++)
                {
                    result.AddRange(AddressRange.FromInclusive(ranges[i].start, ranges[i].last));
                }

                return result;
            }
        }
    }

    /// <summary><c>IOMMU_GET_HW_INFO</c>: whether the IOMMU behind a bound device can track dirty pages.</summary>
    /// <param name="deviceId">The id <see cref="VfioDevice.BindIommufd"/> returned.</param>
    /// <returns><see langword="true"/> when <c>IOMMU_HW_CAP_DIRTY_TRACKING</c> is reported.</returns>
    public bool SupportsDirtyTracking(uint deviceId)
    {
        var cmd = new iommu_hw_info { size = (uint)sizeof(iommu_hw_info), dev_id = deviceId };
        Handle.Ioctl(IOMMU_GET_HW_INFO, nameof(IOMMU_GET_HW_INFO), &cmd);
        return (cmd.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING) != 0;
    }

    /// <summary><c>IOMMU_HWPT_ALLOC</c>: a paging hardware page table over an IOAS.</summary>
    /// <param name="deviceId">The bound device.</param>
    /// <param name="ioasId">The IO address space it mirrors.</param>
    /// <param name="dirtyTracking">
    /// Allocate with <c>IOMMU_HWPT_ALLOC_DIRTY_TRACKING</c>: required for dirty tracking, since a domain created
    /// implicitly by attaching to the IOAS has no dirty ops (EOPNOTSUPP later).
    /// </param>
    /// <returns>The HWPT id.</returns>
    public uint AllocateHwpt(uint deviceId, uint ioasId, bool dirtyTracking)
    {
        var cmd = new iommu_hwpt_alloc
        {
            size = (uint)sizeof(iommu_hwpt_alloc),
            flags = dirtyTracking ? IOMMU_HWPT_ALLOC_DIRTY_TRACKING : 0,
            dev_id = deviceId,
            pt_id = ioasId,
        };
        Handle.Ioctl(IOMMU_HWPT_ALLOC, nameof(IOMMU_HWPT_ALLOC), &cmd);
        return cmd.out_hwpt_id;
    }

    /// <summary><c>IOMMU_HWPT_SET_DIRTY_TRACKING</c>: enabling starts a clean epoch (stale dirty bits are discarded).</summary>
    /// <param name="hwptId">The HWPT.</param>
    /// <param name="enable">Enable or disable.</param>
    public void SetDirtyTracking(uint hwptId, bool enable)
    {
        var cmd = new iommu_hwpt_set_dirty_tracking
        {
            size = (uint)sizeof(iommu_hwpt_set_dirty_tracking),
            flags = enable ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0,
            hwpt_id = hwptId,
        };
        Handle.Ioctl(IOMMU_HWPT_SET_DIRTY_TRACKING, nameof(IOMMU_HWPT_SET_DIRTY_TRACKING), &cmd);
    }

    /// <summary>
    /// The checks this binding makes before <c>IOMMU_HWPT_GET_DIRTY_BITMAP</c> reaches the kernel; the emulated HWPT
    /// makes the same ones, so that a bad argument fails the same way on both.
    /// </summary>
    /// <param name="length">Bytes of the range.</param>
    /// <param name="pageSize">Bytes per bit.</param>
    /// <param name="bitmap">The bitmap's length in 64-bit words (named as the caller's parameter, which the exception names).</param>
    /// <exception cref="ArgumentException">The page size is not a power of two, or the bitmap is shorter than the range needs.</exception>
    internal static void CheckDirtyBitmapArguments(ulong length, ulong pageSize, int bitmap)
    {
        if (pageSize == 0 || (pageSize & (pageSize - 1)) != 0)
        {
            throw new ArgumentException($"The page size {pageSize} is not a power of two.", nameof(pageSize));
        }

        ulong bits = (length / pageSize) + (length % pageSize != 0 ? 1UL : 0);
        if ((ulong)bitmap * 64 < bits)
        {
            throw new ArgumentException($"The bitmap has {bitmap} words but the range needs {(bits + 63) / 64}.", nameof(bitmap));
        }
    }

    /// <summary><c>IOMMU_HWPT_GET_DIRTY_BITMAP</c>: ORs the dirty bits of a range into <paramref name="bitmap"/>.</summary>
    /// <param name="hwptId">The HWPT.</param>
    /// <param name="iova">The first byte; aligned to <paramref name="pageSize"/> and the IOAS alignment.</param>
    /// <param name="length">Bytes; aligned likewise.</param>
    /// <param name="pageSize">Bytes per bit, a power of two.</param>
    /// <param name="bitmap">Receives bit k for IOVA <paramref name="iova"/> + k × <paramref name="pageSize"/>. The kernel only sets bits: zero it first.</param>
    /// <param name="noClear">Read without clearing the IOPTE dirty bits (<c>IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR</c>).</param>
    /// <exception cref="ArgumentException"><paramref name="bitmap"/> is shorter than the range needs, or the page size is not a power of two.</exception>
    /// <remarks>
    /// Query mapped ranges one at a time: the kernel stops silently at the first unmapped hole, and the dirty
    /// bits after it are neither reported nor cleared.
    /// </remarks>
    public void GetDirtyBitmap(uint hwptId, ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap, bool noClear)
    {
        CheckDirtyBitmapArguments(length, pageSize, bitmap.Length);

        fixed (ulong* data = bitmap)
        {
            var cmd = new iommu_hwpt_get_dirty_bitmap
            {
                size = (uint)sizeof(iommu_hwpt_get_dirty_bitmap),
                hwpt_id = hwptId,
                flags = noClear ? IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0,
                iova = iova,
                length = length,
                page_size = pageSize,
                data = (ulong)data,
            };
            Handle.Ioctl(IOMMU_HWPT_GET_DIRTY_BITMAP, nameof(IOMMU_HWPT_GET_DIRTY_BITMAP), &cmd);
        }
    }

    /// <summary><c>IOMMU_DESTROY</c>: destroys an IOAS or HWPT object.</summary>
    /// <param name="objectId">The object.</param>
    public void Destroy(uint objectId)
    {
        var cmd = new iommu_destroy { size = (uint)sizeof(iommu_destroy), id = objectId };
        Handle.Ioctl(IOMMU_DESTROY, nameof(IOMMU_DESTROY), &cmd);
    }

    /// <summary>Closes the iommufd; the kernel destroys every object it still holds.</summary>
    public void Dispose() => Handle.Dispose();
}
