// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Numerics;

namespace DirtyLog.Tracking;

/// <summary>
/// The ranges and page size a device tracker will START with, planned against the device's limits before migration
/// starts: mapped ranges aligned out to the page size, joined where they touch, then folded by merging the smallest
/// gaps first (as the kernel's <c>vfio_combine_iova_ranges</c> does) until the device's range limit is met.
/// </summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
public sealed class DeviceTrackingPlan
{
    private DeviceTrackingPlan(AddressRange[] ranges, long pageSize, ulong mappedBytes)
    {
        Ranges = ranges;
        PageSize = pageSize;
        MappedBytes = mappedBytes;
        foreach (AddressRange r in ranges)
        {
            TrackedBytes += r.Length;
        }
    }

    /// <summary>The ranges to START, sorted and disjoint, aligned to <see cref="PageSize"/>.</summary>
    public IReadOnlyList<AddressRange> Ranges { get; }

    /// <summary>The page size to ask for.</summary>
    public long PageSize { get; }

    /// <summary>The mapped bytes the plan covers.</summary>
    public ulong MappedBytes { get; }

    /// <summary>The bytes the device will track: <see cref="MappedBytes"/> plus alignment and folded gaps, which can never be dirty but cost the device.</summary>
    public ulong TrackedBytes { get; }

    /// <summary>Plans tracking of <paramref name="mapped"/> for a device with <paramref name="limits"/>.</summary>
    /// <param name="mapped">The mapped IOVA ranges, disjoint, in any order.</param>
    /// <param name="requestedPageSize">The page size wanted; raised to the device's minimum.</param>
    /// <param name="limits">The device's limits.</param>
    /// <returns>The plan.</returns>
    /// <exception cref="ArgumentException">Nothing is mapped, or mapped ranges overlap.</exception>
    /// <exception cref="DeviceTrackingPlanException">The device cannot track these ranges; the message says why.</exception>
    public static DeviceTrackingPlan Create(IEnumerable<AddressRange> mapped, long requestedPageSize, DeviceDirtyLogLimits limits)
    {
        ArgumentNullException.ThrowIfNull(mapped);
        ArgumentNullException.ThrowIfNull(limits);
        limits.Validate();
        AddressRange[] sorted = mapped.Where(r => !r.IsEmpty).OrderBy(r => r.Start).ToArray();
        if (sorted.Length == 0)
        {
            throw new ArgumentException("Nothing is mapped: a device tracker needs at least one range.", nameof(mapped));
        }

        long pageSize = Math.Max(requestedPageSize, limits.MinPageSize);
        if (!BitOperations.IsPow2(pageSize) || pageSize > limits.MaxPageSize)
        {
            throw new DeviceTrackingPlanException(
                $"page size {requestedPageSize} cannot be granted: the device logs at powers of two from {limits.MinPageSize} to {limits.MaxPageSize} bytes");
        }

        ulong mask = (ulong)pageSize - 1;
        ulong mappedBytes = 0;
        var aligned = new List<AddressRange>(sorted.Length);
        for (int i = 0; i < sorted.Length; i++)
        {
            AddressRange r = sorted[i];
            if (i > 0 && sorted[i - 1].End > r.Start)
            {
                throw new ArgumentException($"Mapped ranges {sorted[i - 1]} and {r} overlap.", nameof(mapped));
            }

            mappedBytes += r.Length;
            ulong start = r.Start & ~mask;
            ulong last = (r.Start + r.Length - 1) | mask;
            if (limits.AddressWidth < 64 && last >> limits.AddressWidth != 0)
            {
                throw new DeviceTrackingPlanException(
                    $"mapping {r} lies above the device's {limits.AddressWidth}-bit tracking limit (highest trackable IOVA 0x{(1UL << limits.AddressWidth) - 1:x})");
            }

            ulong previousLast = aligned.Count > 0 ? aligned[^1].Start + aligned[^1].Length - 1 : 0;
            if (aligned.Count > 0 && (start == 0 || start - 1 <= previousLast))
            {
                // Alignment made it touch or overlap the previous range: START refuses overlaps, so join them.
                aligned[^1] = new AddressRange(aligned[^1].Start, Math.Max(previousLast, last) - aligned[^1].Start + 1);
            }
            else
            {
                aligned.Add(new AddressRange(start, last - start + 1));
            }
        }

        return new DeviceTrackingPlan(Fold(aligned, limits.MaxRanges), pageSize, mappedBytes);
    }

    /// <summary>Merges the smallest gaps until at most <paramref name="maxRanges"/> remain: the same as keeping the largest gaps.</summary>
    private static AddressRange[] Fold(List<AddressRange> ranges, int maxRanges)
    {
        if (ranges.Count <= maxRanges)
        {
            return ranges.ToArray();
        }

        // Gap i lies between range i and i + 1. Keep the (maxRanges - 1) largest; ties go to the later gap, as the
        // kernel's scan merges the first smallest gap it finds.
        int[] keep = Enumerable.Range(0, ranges.Count - 1)
            .OrderByDescending(i => ranges[i + 1].Start - ranges[i].End)
            .ThenByDescending(i => i)
            .Take(maxRanges - 1)
            .Order()
            .ToArray();
        var folded = new AddressRange[keep.Length + 1];
        int first = 0;
        for (int k = 0; k <= keep.Length; k++)
        {
            int lastIndex = k < keep.Length ? keep[k] : ranges.Count - 1;
            folded[k] = new AddressRange(ranges[first].Start, ranges[lastIndex].End - ranges[first].Start);
            first = lastIndex + 1;
        }

        return folded;
    }
}
