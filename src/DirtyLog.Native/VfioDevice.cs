// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.Versioning;
using DirtyLog.Native.Linux.Vfio;
using DirtyLog.Tracking;
using static DirtyLog.Native.Linux.Vfio.VfioConstants;

namespace DirtyLog.Native;

/// <summary>
/// A VFIO device opened through its cdev (<c>/dev/vfio/devices/vfioN</c>): binding to an iommufd, attaching to a
/// hardware page table, and the device's own DMA dirty logging (<c>VFIO_DEVICE_FEATURE_DMA_LOGGING_*</c>).
/// </summary>
/// <remarks>
/// The device reports in IOVA and knows nothing of how IOVA maps to guest memory. Its log survives an unmap,
/// and REPORT is always read-and-clear. Calls may come from several threads; the kernel serialises them per device.
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed unsafe class VfioDevice : IDisposable
{
    private VfioDevice(FileDescriptorHandle handle) => Handle = handle;

    /// <summary>The open descriptor.</summary>
    public FileDescriptorHandle Handle { get; }

    /// <summary>
    /// A VFIO device the VMM opened, over its descriptor: owned by DirtyLog only if <paramref name="handle"/> owns it
    /// (<see cref="FileDescriptorHandle.Own"/>); a borrowed one (<see cref="FileDescriptorHandle.Borrow(System.Runtime.InteropServices.SafeHandle, string)"/>)
    /// stays the VMM's, and disposing this object leaves it open.
    /// </summary>
    /// <param name="handle">The descriptor.</param>
    /// <returns>The wrapper.</returns>
    /// <exception cref="KernelException">The descriptor is not open (EBADF).</exception>
    /// <exception cref="ArgumentException">It is open but not a VFIO device (a path under <c>/dev/vfio/</c>).</exception>
    public static VfioDevice FromHandle(FileDescriptorHandle handle)
    {
        ArgumentNullException.ThrowIfNull(handle);
        handle.Require("/dev/vfio/", "a VFIO device");
        return new(handle);
    }

    /// <summary>Opens a VFIO device cdev.</summary>
    /// <param name="path">Such as <c>/dev/vfio/devices/vfio0</c>.</param>
    /// <returns>The open device.</returns>
    /// <exception cref="KernelException">The node is missing or not accessible.</exception>
    public static VfioDevice Open(string path) => new(FileDescriptorHandle.Open(path));

    /// <summary><c>VFIO_DEVICE_BIND_IOMMUFD</c>: binds the device to an iommufd.</summary>
    /// <param name="iommufd">The iommufd.</param>
    /// <returns>The device id within that iommufd.</returns>
    public uint BindIommufd(IommufdContext iommufd)
    {
        ArgumentNullException.ThrowIfNull(iommufd);
        // The iommufd travels inside a struct, where no marshaller can reference it: hold it by hand for the call.
        bool added = false;
        try
        {
            iommufd.Handle.DangerousAddRef(ref added);
            var cmd = new vfio_device_bind_iommufd
            {
                argsz = (uint)sizeof(vfio_device_bind_iommufd),
                iommufd = (int)iommufd.Handle.DangerousGetHandle().ToInt64(),
            };
            Handle.Ioctl(VFIO_DEVICE_BIND_IOMMUFD, nameof(VFIO_DEVICE_BIND_IOMMUFD), &cmd);
            return cmd.out_devid;
        }
        finally
        {
            if (added)
            {
                iommufd.Handle.DangerousRelease();
            }
        }
    }

    /// <summary><c>VFIO_DEVICE_ATTACH_IOMMUFD_PT</c>: attaches the device to an IOAS or HWPT.</summary>
    /// <param name="pageTableId">The IOAS or HWPT id.</param>
    /// <returns>The id actually attached (the kernel may return an automatically created HWPT for an IOAS).</returns>
    public uint AttachPageTable(uint pageTableId)
    {
        var cmd = new vfio_device_attach_iommufd_pt { argsz = (uint)sizeof(vfio_device_attach_iommufd_pt), pt_id = pageTableId };
        Handle.Ioctl(VFIO_DEVICE_ATTACH_IOMMUFD_PT, nameof(VFIO_DEVICE_ATTACH_IOMMUFD_PT), &cmd);
        return cmd.pt_id;
    }

    /// <summary><c>VFIO_DEVICE_FEATURE</c> with PROBE: whether the device supports a feature with the given access.</summary>
    /// <param name="feature">The feature number, such as 6 for DMA_LOGGING_START.</param>
    /// <param name="set">Probe for SET (otherwise GET).</param>
    /// <returns><see langword="false"/> when the driver has no such feature (ENOTTY, or EINVAL for the access).</returns>
    public bool ProbeFeature(uint feature, bool set)
    {
        var header = new vfio_device_feature
        {
            argsz = (uint)sizeof(vfio_device_feature),
            flags = feature | VFIO_DEVICE_FEATURE_PROBE | (set ? VFIO_DEVICE_FEATURE_SET : VFIO_DEVICE_FEATURE_GET),
        };
        try
        {
            Handle.Ioctl(VFIO_DEVICE_FEATURE, nameof(VFIO_DEVICE_FEATURE) + "(PROBE)", &header);
            return true;
        }
        catch (KernelException e) when (e.Errno is Errno.ENOTTY or Errno.EINVAL)
        {
            return false;
        }
    }

    /// <summary>Whether the device has its own DMA dirty tracker (PROBE of DMA_LOGGING_START for SET).</summary>
    /// <returns><see langword="true"/> when DMA logging is supported.</returns>
    public bool SupportsDmaLogging() => ProbeFeature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, set: true);

    /// <summary><c>DMA_LOGGING_START</c>: starts logging the given ranges at (about) the given page size.</summary>
    /// <param name="ranges">At most 256 non-overlapping ranges, each aligned to <paramref name="pageSize"/>.</param>
    /// <param name="pageSize">The page size asked for.</param>
    /// <returns>The page size the device granted (it may round it): use it for REPORT.</returns>
    public ulong StartDmaLogging(ReadOnlySpan<AddressRange> ranges, ulong pageSize)
    {
        var native = new vfio_device_feature_dma_logging_range[ranges.Length];
        for (int i = 0; i < ranges.Length; i++)
        {
            native[i] = new vfio_device_feature_dma_logging_range { iova = ranges[i].Start, length = ranges[i].Length };
        }

        fixed (vfio_device_feature_dma_logging_range* p = native)
        {
            var control = new vfio_device_feature_dma_logging_control { page_size = pageSize, num_ranges = (uint)native.Length, ranges = (ulong)p };
            SetFeature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, "DMA_LOGGING_START", ref control);
            return control.page_size;
        }
    }

    /// <summary><c>DMA_LOGGING_STOP</c>: stops logging.</summary>
    public void StopDmaLogging()
    {
        var header = new vfio_device_feature { argsz = (uint)sizeof(vfio_device_feature), flags = VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP | VFIO_DEVICE_FEATURE_SET };
        Handle.Ioctl(VFIO_DEVICE_FEATURE, nameof(VFIO_DEVICE_FEATURE) + "(DMA_LOGGING_STOP)", &header);
    }

    /// <summary><c>DMA_LOGGING_REPORT</c>: ORs the device's dirty bits for a range into <paramref name="bitmap"/> and clears them in the device.</summary>
    /// <param name="iova">The first byte.</param>
    /// <param name="length">Bytes.</param>
    /// <param name="pageSize">Bytes per bit: a power of two of at least 4096 (EINVAL otherwise).</param>
    /// <param name="bitmap">Receives bit k for IOVA <paramref name="iova"/> + k × <paramref name="pageSize"/>. Zero it first: the kernel only sets bits.</param>
    /// <exception cref="ArgumentException"><paramref name="bitmap"/> is shorter than the range needs.</exception>
    public void ReportDmaLogging(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap)
    {
        ulong bits = pageSize == 0 ? 0 : (length + pageSize - 1) / pageSize;
        if ((ulong)bitmap.Length * 64 < bits)
        {
            throw new ArgumentException($"The bitmap has {bitmap.Length} words but the range needs {(bits + 63) / 64}.", nameof(bitmap));
        }

        fixed (ulong* data = bitmap)
        {
            var report = new vfio_device_feature_dma_logging_report { iova = iova, length = length, page_size = pageSize, bitmap = (ulong)data };
            GetFeature(VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, "DMA_LOGGING_REPORT", ref report);
        }
    }

    /// <summary>Closes the device.</summary>
    public void Dispose() => Handle.Dispose();

    private void SetFeature<T>(uint feature, string name, ref T payload)
        where T : unmanaged => Feature(feature | VFIO_DEVICE_FEATURE_SET, name, ref payload);

    private void GetFeature<T>(uint feature, string name, ref T payload)
        where T : unmanaged => Feature(feature | VFIO_DEVICE_FEATURE_GET, name, ref payload);

    /// <summary>Frames a payload behind the 8-byte <c>vfio_device_feature</c> header, issues it, and copies the payload back.</summary>
    private void Feature<T>(uint flags, string name, ref T payload)
        where T : unmanaged
    {
        int total = sizeof(vfio_device_feature) + sizeof(T);
        byte* buffer = stackalloc byte[total];
        *(vfio_device_feature*)buffer = new vfio_device_feature { argsz = (uint)total, flags = flags };
        *(T*)(buffer + sizeof(vfio_device_feature)) = payload;
        Handle.Ioctl(VFIO_DEVICE_FEATURE, $"{nameof(VFIO_DEVICE_FEATURE)}({name})", buffer);
        payload = *(T*)(buffer + sizeof(vfio_device_feature));
    }
}
