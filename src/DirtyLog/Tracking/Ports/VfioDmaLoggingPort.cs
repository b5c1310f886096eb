// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.Versioning;
using DirtyLog.Native;

namespace DirtyLog.Tracking.Ports;

/// <summary>The real <see cref="IDeviceDirtyLogPort"/>: DMA logging of a VFIO device opened through its cdev.</summary>
/// <remarks>
/// <para>Does not own the device. VFIO does not report the device's limits: pass them (see <see cref="DeviceDirtyLogLimits.Mlx5"/>).</para>
/// <para>Thread safety: every call is one ioctl on the device, which the kernel serialises per device; the tracker calls it one at a time.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed class VfioDmaLoggingPort : IDeviceDirtyLogPort
{
    private readonly VfioDevice _device;

    /// <summary>Creates the port.</summary>
    /// <param name="device">The device, bound to the iommufd whose IOAS it DMAs in.</param>
    /// <param name="ioAddressSpaceId">That IOAS.</param>
    /// <param name="limits">The device's limits; VFIO's defaults when omitted.</param>
    public VfioDmaLoggingPort(VfioDevice device, uint ioAddressSpaceId, DeviceDirtyLogLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        _device = device;
        IoAddressSpaceId = ioAddressSpaceId;
        Limits = limits ?? new DeviceDirtyLogLimits();
        Limits.Validate();
    }

    /// <inheritdoc/>
    public string Name => _device.Handle.Path;

    /// <inheritdoc/>
    public uint IoAddressSpaceId { get; }

    /// <inheritdoc/>
    public DeviceDirtyLogLimits Limits { get; }

    /// <inheritdoc/>
    public bool IsSupported => _device.SupportsDmaLogging();

    /// <inheritdoc/>
    public ulong StartLogging(ReadOnlySpan<AddressRange> ranges, ulong pageSize)
    {
        return _device.StartDmaLogging(ranges, pageSize);
    }

    /// <inheritdoc/>
    public void StopLogging() => _device.StopDmaLogging();

    /// <inheritdoc/>
    public void Report(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap) => _device.ReportDmaLogging(iova, length, pageSize, bitmap);
}
