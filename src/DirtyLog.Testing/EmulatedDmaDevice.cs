// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Numerics;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Testing;

/// <summary>
/// An emulated passthrough device that does DMA through an <see cref="EmulatedHwpt"/> and keeps its own DMA dirty
/// log, as mlx5 does (VFIO DMA logging), and the emulated <see cref="IDeviceDirtyLogPort"/> over it.
/// </summary>
/// <remarks>
/// <para>It keeps the kernel's and mlx5's rules, with their errnos (as <see cref="KernelException"/>): START with no
/// range or overlapping or unaligned ranges gives EINVAL, more than 256 gives E2BIG, an overflowing range EOVERFLOW,
/// a second START EINVAL; the device folds ranges beyond its own limit (smallest gaps first), raises the page size to
/// a power of two within its limits and reports it back, and refuses a span above its address width with EOPNOTSUPP.
/// REPORT needs a started log (EINVAL) and a power-of-two page size of at least 4096 (EINVAL), always clears, reports
/// nothing outside the started ranges, and fails with a sticky EIO after a device error until STOP and START. The log
/// survives an unmap: it knows IOVAs only.</para>
/// <para>Thread safety: DMA may run on any number of threads while START, STOP and REPORT are issued (they are
/// serialised, as the kernel serialises them per device). A DMA write is logged before its data lands.</para>
/// </remarks>
public sealed class EmulatedDmaDevice : IDeviceDirtyLogPort, IDisposable
{
    private const string StartRequest = "VFIO_DEVICE_FEATURE(DMA_LOGGING_START)";
    private const string ReportRequest = "VFIO_DEVICE_FEATURE(DMA_LOGGING_REPORT)";

    private readonly EmulatedHwpt _pageTable;
    private readonly Action<ulong, int> _logWrite;
    private readonly Lock _gate = new();
    private readonly bool _supported;
    private DeviceLoggingSession? _session;
    private volatile bool _deviceError;

    /// <summary>Creates a device whose DMA goes through <paramref name="pageTable"/>.</summary>
    /// <param name="pageTable">The HWPT the device is attached to.</param>
    /// <param name="limits">The device tracker's limits; VFIO's defaults when omitted.</param>
    /// <param name="supportsLogging">Whether the device has a DMA logger at all (PROBE answers ENOTTY otherwise).</param>
    /// <param name="name">A name for diagnostics.</param>
    public EmulatedDmaDevice(EmulatedHwpt pageTable, DeviceDirtyLogLimits? limits = null, bool supportsLogging = true, string name = "emulated-dma")
    {
        ArgumentNullException.ThrowIfNull(pageTable);
        _logWrite = LogWrite;
        _pageTable = pageTable;
        Limits = limits ?? new DeviceDirtyLogLimits();
        Limits.Validate();
        _supported = supportsLogging;
        Name = name;
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public uint IoAddressSpaceId => _pageTable.IoAddressSpaceId;

    /// <inheritdoc/>
    public DeviceDirtyLogLimits Limits { get; }

    /// <inheritdoc/>
    public bool IsSupported => _supported;

    /// <summary>Whether the log is started.</summary>
    public bool IsLogging => Volatile.Read(ref _session) is not null;

    /// <summary>The ranges the device tracks now (after its own folding), empty when stopped.</summary>
    public IReadOnlyList<AddressRange> TrackedRanges => Volatile.Read(ref _session)?.Ranges ?? [];

    /// <summary>The gate each REPORT passes before it runs: held by tests, slowed by benchmarks.</summary>
    public ReportGate Reports { get; } = new();

    /// <summary>A firmware error: every REPORT fails with EIO until STOP and START.</summary>
    public void InjectDeviceError() => _deviceError = true;

    /// <summary>A DMA write by the device: logged (when tracked), then through the IOMMU into guest memory.</summary>
    /// <param name="iova">The IOVA written.</param>
    /// <param name="data">The bytes.</param>
    /// <returns><see langword="false"/> on an IO page fault.</returns>
    public bool DmaWrite(ulong iova, ReadOnlySpan<byte> data) => _pageTable.DmaWrite(iova, data, _logWrite);

    private void LogWrite(ulong iova, int length)
    {
        // Called under the IO address space's lock, before translation: the log entry and the translation of one
        // write are never split by an unmap, as on hardware.
        DeviceLoggingSession? session = Volatile.Read(ref _session);
        if (session is not null && length != 0)
        {
            ulong last = iova + (ulong)length - 1;
            for (ulong granule = iova / session.Granule; granule <= last / session.Granule; granule++)
            {
                if (session.Tracks(granule * session.Granule))
                {
                    session.Log.Mark(granule);
                }
            }
        }
    }

    /// <summary>A DMA write of one 64-bit value.</summary>
    /// <param name="iova">The IOVA written.</param>
    /// <param name="value">The value.</param>
    /// <returns><see langword="false"/> on an IO page fault.</returns>
    public bool DmaWriteUInt64(ulong iova, ulong value) => DmaWrite(iova, BitConverter.GetBytes(value));

    /// <inheritdoc/>
    public ulong StartLogging(ReadOnlySpan<AddressRange> ranges, ulong pageSize)
    {
        AddressRange[] requested = ranges.ToArray();
        lock (_gate)
        {
            if (!_supported)
            {
                throw Error(StartRequest, Errno.ENOTTY);
            }

            if (_session is not null || requested.Length == 0 || pageSize == 0)
            {
                throw Error(StartRequest, Errno.EINVAL);
            }

            if (requested.Length > DeviceDirtyLogLimits.VfioMaxRanges)
            {
                throw Error(StartRequest, Errno.E2BIG);
            }

            foreach (AddressRange r in requested)
            {
                if (r.Start % pageSize != 0 || r.Length % pageSize != 0)
                {
                    throw Error(StartRequest, Errno.EINVAL);
                }
            }

            AddressRange[] sorted = requested.OrderBy(r => r.Start).ToArray();
            for (int i = 1; i < sorted.Length; i++)
            {
                if (sorted[i - 1].End > sorted[i].Start)
                {
                    throw Error(StartRequest, Errno.EINVAL);
                }
            }

            // The driver: the page size clamped to the device's powers of two, the ranges folded to its limit.
            ulong granted = Math.Clamp(BitOperations.RoundUpToPowerOf2(pageSize), (ulong)Limits.MinPageSize, (ulong)Limits.MaxPageSize);
            AddressRange[] tracked = Combine(sorted, Limits.MaxRanges);
            ulong highest = tracked[^1].Start + tracked[^1].Length - 1;
            if (Limits.AddressWidth < 64 && highest >> Limits.AddressWidth != 0)
            {
                throw Error(StartRequest, Errno.EOPNOTSUPP);
            }

            _deviceError = false;
            Volatile.Write(ref _session, new DeviceLoggingSession(tracked, granted));
            return granted;
        }
    }

    /// <inheritdoc/>
    public void StopLogging()
    {
        lock (_gate)
        {
            // The session is dropped, not disposed: a DMA write that loaded it may still be marking its log, and the
            // log's finalizer frees the memory only once no thread can reach it.
            Volatile.Write(ref _session, null);
            _deviceError = false;
        }
    }

    /// <inheritdoc/>
    public void Report(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap)
    {
        if (pageSize < 4096 || !BitOperations.IsPow2(pageSize))
        {
            throw Error(ReportRequest, Errno.EINVAL);
        }

        if (length == 0 || iova + length - 1 < iova)
        {
            throw Error(ReportRequest, Errno.EOVERFLOW);
        }

        if ((ulong)bitmap.Length * 64 < ((length - 1) / pageSize) + 1)
        {
            throw Error(ReportRequest, Errno.EFAULT);
        }

        Reports.Pass();

        lock (_gate)
        {
            DeviceLoggingSession session = _session ?? throw Error(ReportRequest, Errno.EINVAL);
            if (_deviceError)
            {
                throw Error(ReportRequest, Errno.EIO);
            }

            var query = new AddressRange(iova, length);
            var sink = new ReportSink(bitmap, iova, pageSize, session.Granule, query);
            foreach (AddressRange tracked in session.Ranges)
            {
                AddressRange part = tracked.Intersect(query);
                if (part.IsEmpty)
                {
                    continue;
                }

                ulong firstGranule = part.Start / session.Granule;
                ulong lastGranule = (part.Start + part.Length - 1) / session.Granule;
                session.Log.HarvestRange(firstGranule, lastGranule - firstGranule + 1, ref sink);
            }
        }
    }

    /// <summary>Stops logging and frees the log.</summary>
    public void Dispose() => StopLogging();

    private static KernelException Error(string request, Errno errno) => new("ioctl", $"{request} on the emulated device", errno);

    /// <summary>The kernel's <c>vfio_combine_iova_ranges</c>: merge the pair with the smallest gap until few enough remain.</summary>
    internal static AddressRange[] Combine(AddressRange[] sorted, int maxRanges)
    {
        var ranges = new List<AddressRange>(sorted);
        while (ranges.Count > maxRanges)
        {
            int best = 0;
            ulong smallest = ulong.MaxValue;
            for (int i = 0; i + 1 < ranges.Count; i++)
            {
                ulong gap = ranges[i + 1].Start - ranges[i].End;
                if (gap < smallest)
                {
                    smallest = gap;
                    best = i;
                }
            }

            ranges[best] = new AddressRange(ranges[best].Start, ranges[best + 1].End - ranges[best].Start);
            ranges.RemoveAt(best + 1);
        }

        return ranges.ToArray();
    }

    /// <summary>Turns dirty granules into bits of the caller's bitmap, clipped to the query.</summary>
    private readonly ref struct ReportSink : IDirtyRunSink
    {
        private readonly Span<ulong> _bitmap;
        private readonly ulong _iova;
        private readonly ulong _pageSize;
        private readonly ulong _granule;
        private readonly AddressRange _query;

        public ReportSink(Span<ulong> bitmap, ulong iova, ulong pageSize, ulong granule, AddressRange query)
        {
            _bitmap = bitmap;
            _iova = iova;
            _pageSize = pageSize;
            _granule = granule;
            _query = query;
        }

        public bool TryAccept(DirtyRun run)
        {
            AddressRange bytes = new AddressRange(run.FirstPage * _granule, run.PageCount * _granule).Intersect(_query);
            if (!bytes.IsEmpty)
            {
                ulong first = (bytes.Start - _iova) / _pageSize;
                ulong last = (bytes.Start + bytes.Length - 1 - _iova) / _pageSize;
                for (ulong bit = first; bit <= last; bit++)
                {
                    _bitmap[(int)(bit / 64)] |= 1UL << (int)(bit % 64);
                }
            }

            return true;
        }
    }
}
