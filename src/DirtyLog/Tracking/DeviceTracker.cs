// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Numerics;
using System.Threading;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Tracking;

/// <summary>
/// Dirty pages written by a device's DMA, as the device's own tracker logs them (VFIO DMA logging, as mlx5 does), in
/// the IOVA space the device addresses. Works over any <see cref="IDeviceDirtyLogPort"/>: a real VFIO device or the emulator.
/// </summary>
/// <remarks>
/// <para>Before it starts it plans (<see cref="Plan"/>): the mapped ranges aligned to the page size, folded to the
/// device's range limit by merging the smallest gaps first, checked against its address width and page sizes. A plan
/// that cannot fit is refused with <see cref="DeviceTrackingPlanException"/> before migration starts, rather than an
/// EOPNOTSUPP later. It then reads at the page size the device granted, in chunks, zeroing its buffer before every
/// REPORT. REPORT always clears: this tracker cannot read without clearing.</para>
/// <para>The device's log survives an unmap, so the correlator reads it after the unmap; mapped ranges set while
/// started are recorded for the next start (re-arming is the correlator's). Thread safety: as <see cref="IDirtyTracker"/>.</para>
/// </remarks>
public sealed class DeviceTracker : DirtyTrackerBase
{
    private const int ChunkWords = 4096;

    private readonly IDeviceDirtyLogPort _port;
    private readonly long _requestedPageSize;
    private readonly ulong[] _scratch = new ulong[ChunkWords];
    private AddressRange[] _mapped = [];
    private AddressRange[] _active = [];

    /// <summary>Creates a tracker over a device's DMA logging port.</summary>
    /// <param name="port">The device's DMA logger.</param>
    /// <param name="pageSize">The page size to ask for; the device may grant a larger one.</param>
    /// <param name="name">A name; <c>device:</c> and the port's name by default.</param>
    public DeviceTracker(IDeviceDirtyLogPort port, long pageSize = 4096, string? name = null)
        : base(name ?? $"device:{port?.Name}", DirtyAddressSpace.Iova(port?.IoAddressSpaceId ?? 0), pageSize)
    {
        ArgumentNullException.ThrowIfNull(port);
        _port = port;
        _requestedPageSize = pageSize;
    }

    /// <summary>The mapped IOVA ranges the next start will plan for.</summary>
    public IReadOnlyList<AddressRange> MappedRanges => Volatile.Read(ref _mapped);

    /// <inheritdoc/>
    /// <remarks>While started: the ranges the device tracks, aligned to the granted page size. Stopped: the mapped ranges.</remarks>
    public override IReadOnlyList<AddressRange> Coverage => State == DirtyTrackerState.Stopped ? MappedRanges : Volatile.Read(ref _active);

    /// <inheritdoc/>
    public override bool CanReadWithoutClear => false;

    /// <summary>Sets the mapped IOVA ranges to track from the next start.</summary>
    /// <param name="ranges">Disjoint ranges.</param>
    /// <exception cref="ArgumentException">Ranges overlap; the previous ones stay in force.</exception>
    public void SetMappedRanges(IEnumerable<AddressRange> ranges)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        AddressRange[] sorted = ranges.Where(r => !r.IsEmpty).OrderBy(r => r.Start).ToArray();
        for (int i = 1; i < sorted.Length; i++)
        {
            if (sorted[i - 1].End > sorted[i].Start)
            {
                throw new ArgumentException($"{sorted[i]} overlaps {sorted[i - 1]}.", nameof(ranges));
            }
        }

        Volatile.Write(ref _mapped, sorted);
    }

    /// <summary>Plans tracking of the mapped ranges against the device's limits, without starting anything.</summary>
    /// <returns>The plan a start would use.</returns>
    /// <exception cref="DeviceTrackingPlanException">The device cannot track them; the message says why.</exception>
    /// <exception cref="ArgumentException">Nothing is mapped.</exception>
    public DeviceTrackingPlan Plan() => DeviceTrackingPlan.Create(MappedRanges, _requestedPageSize, _port.Limits);

    /// <inheritdoc/>
    protected override void OnStart()
    {
        if (!_port.IsSupported)
        {
            throw new DirtyTrackerException(Name, "the device has no DMA dirty logging (VFIO PROBE answered ENOTTY)");
        }

        DeviceTrackingPlan plan = Plan();
        ulong granted = _port.StartLogging(plan.Ranges.ToArray(), (ulong)plan.PageSize);
        if (granted < (ulong)plan.PageSize || !BitOperations.IsPow2(granted))
        {
            _port.StopLogging();
            throw new DirtyTrackerException(Name, $"the device granted an unusable page size {granted} for {plan.PageSize}");
        }

        PageSize = (long)granted;
        Volatile.Write(ref _active, AlignOut(plan.Ranges, granted));
    }

    /// <inheritdoc/>
    protected override void OnStop()
    {
        _port.StopLogging();
        Volatile.Write(ref _active, []);
        PageSize = _requestedPageSize;
    }

    /// <inheritdoc/>
    protected override ulong ReadCore(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode)
    {
        ulong granule = (ulong)PageSize;
        ulong chunkBytes = (ulong)ChunkWords * 64 * granule;
        ulong count = 0;
        foreach (AddressRange active in Volatile.Read(ref _active))
        {
            AddressRange piece = active.Intersect(range);
            for (ulong start = piece.Start; start < piece.End; start += Math.Min(chunkBytes, piece.End - start)) // never wraps at the top of the space
            {
                ulong length = Math.Min(chunkBytes, piece.End - start);
                ulong bits = length / granule;
                Span<ulong> words = _scratch.AsSpan(0, (int)((bits + 63) / 64));
                words.Clear();
                _port.Report(start, length, granule, words);
                count += Deliver(words, bits, start, sink);
            }
        }

        return count;
    }

    /// <summary>The ranges widened to whole granted pages and joined where that makes them meet.</summary>
    private static AddressRange[] AlignOut(IReadOnlyList<AddressRange> ranges, ulong granule)
    {
        var result = new List<AddressRange>(ranges.Count);
        foreach (AddressRange r in ranges)
        {
            ulong start = r.Start & ~(granule - 1);
            ulong end = (r.End + granule - 1) & ~(granule - 1);
            if (result.Count > 0 && result[^1].End >= start)
            {
                result[^1] = new AddressRange(result[^1].Start, Math.Max(result[^1].End, end) - result[^1].Start);
            }
            else
            {
                result.Add(new AddressRange(start, end - start));
            }
        }

        return result.ToArray();
    }
}
