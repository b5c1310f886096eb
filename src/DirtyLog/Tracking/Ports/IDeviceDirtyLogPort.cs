// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking.Ports;

/// <summary>
/// A device's own DMA dirty logger (VFIO <c>DMA_LOGGING_START/STOP/REPORT</c>): what <see cref="DeviceTracker"/>
/// needs of it. Implemented over a VFIO device by <see cref="VfioDmaLoggingPort"/> and by the emulator
/// (<c>EmulatedDmaDevice</c> in the DirtyLog.Testing package); the tracker is the same over both.
/// </summary>
/// <remarks>
/// <para>Implementations follow the kernel's rules: errors surface as <c>KernelException</c> with the kernel's errno.</para>
/// <para>Thread safety: the tracker serialises its calls (one start, stop or report at a time). A port shared by several trackers is called by them at once and must be thread-safe, as the kernel is per device.</para>
/// </remarks>
public interface IDeviceDirtyLogPort
{
    /// <summary>A name for diagnostics.</summary>
    string Name { get; }

    /// <summary>The IO address space the device's DMA addresses (its IOVAs) belong to.</summary>
    uint IoAddressSpaceId { get; }

    /// <summary>What the device's tracker can do.</summary>
    DeviceDirtyLogLimits Limits { get; }

    /// <summary>Whether the device supports DMA logging at all (VFIO PROBE).</summary>
    bool IsSupported { get; }

    /// <summary>DMA_LOGGING_START over <paramref name="ranges"/>.</summary>
    /// <param name="ranges">At most 256 disjoint ranges aligned to <paramref name="pageSize"/>.</param>
    /// <param name="pageSize">The page size asked for.</param>
    /// <returns>The page size granted.</returns>
    ulong StartLogging(ReadOnlySpan<AddressRange> ranges, ulong pageSize);

    /// <summary>DMA_LOGGING_STOP.</summary>
    void StopLogging();

    /// <summary>DMA_LOGGING_REPORT: ORs the device's dirty bits for a range into <paramref name="bitmap"/> and clears them.</summary>
    /// <param name="iova">The first byte.</param>
    /// <param name="length">Bytes.</param>
    /// <param name="pageSize">Bytes per bit.</param>
    /// <param name="bitmap">Receives the bits.</param>
    void Report(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap);
}
