// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Tracking;

/// <summary>
/// Dirty pages written by DMA, as the system IOMMU's dirty bits record them (iommufd <c>IOMMU_HWPT_GET_DIRTY_BITMAP</c>),
/// in the IOVA space of one IO address space. Works over any <see cref="IIommuDirtyPort"/>: the real HWPT or the emulator.
/// </summary>
/// <remarks>
/// <para>It queries the mapped ranges one at a time (the kernel stops silently at the first unmapped hole, and the
/// dirties after it would go unreported), in chunks of at most 1 Gi granules' worth of a 32 KiB buffer that it zeroes
/// before every call (the kernel only sets bits). It can read without clearing, which is what to do just before an
/// unmap: the unmap drops the dirty bits with the entries.</para>
/// <para>Coverage is what <see cref="SetMappedRanges"/> last said; the correlator keeps it in step with the IOAS.
/// Thread safety: as <see cref="IDirtyTracker"/>; <see cref="SetMappedRanges"/> may be called at any time, and a
/// read uses the ranges in force when it starts.</para>
/// </remarks>
public sealed class IommuTracker : DirtyTrackerBase
{
    private const int ChunkWords = 4096;

    private readonly IIommuDirtyPort _port;
    private readonly ulong[] _scratch = new ulong[ChunkWords];
    private AddressRange[] _mapped = [];

    /// <summary>Creates a tracker over a HWPT port.</summary>
    /// <param name="port">The HWPT's dirty-tracking facility.</param>
    /// <param name="pageSize">Bytes per dirty bit asked of the IOMMU: a power of two, a multiple of the IOVA alignment.</param>
    /// <param name="name">A name; <c>iommu:</c> and the port's name by default.</param>
    public IommuTracker(IIommuDirtyPort port, long pageSize = 4096, string? name = null)
        : base(name ?? $"iommu:{port?.Name}", DirtyAddressSpace.Iova(port?.IoAddressSpaceId ?? 0), pageSize)
    {
        ArgumentNullException.ThrowIfNull(port);
        if ((ulong)pageSize % port.IovaAlignment != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(pageSize), pageSize, $"The page size must be a multiple of the IOVA alignment ({port.IovaAlignment}).");
        }

        _port = port;
    }

    /// <inheritdoc/>
    public override IReadOnlyList<AddressRange> Coverage => RangeSource?.AllMapped() ?? Volatile.Read(ref _mapped);

    /// <summary>
    /// Set by the correlator that owns this tracker's address space: mapped ranges come from its map, queried per
    /// read, instead of a copied list rebuilt on every map change (a million mappings would make that copy the
    /// cost of every map and unmap).
    /// </summary>
    internal IMappedRangeSource? RangeSource { get; set; }

    /// <inheritdoc/>
    public override bool CanReadWithoutClear => true;

    /// <summary>Sets the mapped IOVA ranges, the only ones ever queried.</summary>
    /// <param name="ranges">Disjoint ranges, each aligned to <see cref="IDirtyTracker.PageSize"/>; adjacent ones are joined.</param>
    /// <exception cref="ArgumentException">Ranges overlap or are not aligned; the previous ranges stay in force.</exception>
    /// <exception cref="InvalidOperationException">The tracker is attached to a correlator's address space.</exception>
    public void SetMappedRanges(IEnumerable<AddressRange> ranges)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        if (RangeSource is not null)
        {
            throw new InvalidOperationException($"{Name} is attached to a correlator, whose map says what is mapped.");
        }

        AddressRange[] sorted = ranges.Where(r => !r.IsEmpty).OrderBy(r => r.Start).ToArray();
        var joined = new List<AddressRange>(sorted.Length);
        foreach (AddressRange r in sorted)
        {
            if (!r.IsAlignedTo((ulong)PageSize))
            {
                throw new ArgumentException($"{r} is not aligned to {PageSize} bytes.", nameof(ranges));
            }

            if (joined.Count > 0 && joined[^1].End > r.Start)
            {
                throw new ArgumentException($"{r} overlaps {joined[^1]}.", nameof(ranges));
            }

            if (joined.Count > 0 && joined[^1].End == r.Start)
            {
                joined[^1] = new AddressRange(joined[^1].Start, joined[^1].Length + r.Length);
            }
            else
            {
                joined.Add(r);
            }
        }

        Volatile.Write(ref _mapped, joined.ToArray());
    }

    /// <inheritdoc/>
    protected override void OnStart() => _port.SetDirtyTracking(true);

    /// <inheritdoc/>
    protected override void OnStop() => _port.SetDirtyTracking(false);

    /// <inheritdoc/>
    private protected override IMappedRangeSource? MapLock => RangeSource;

    /// <inheritdoc/>
    protected override ulong ReadCore(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode)
    {
        Debug.Assert(RangeSource is not { IsHeldByCurrentThread: false }, "lock order: an attached tracker is read under its address space's lock, taken before the tracker's");
        IReadOnlyList<AddressRange> mapped = RangeSource?.MappedWithin(range) ?? Volatile.Read(ref _mapped);
        ulong granule = (ulong)PageSize;
        ulong chunkBytes = (ulong)ChunkWords * 64 * granule;
        ulong count = 0;
        for (int i = FirstEndingAfter(mapped, range.Start); i < mapped.Count && mapped[i].Start < range.End; i++)
        {
            AddressRange piece = mapped[i].Intersect(range);
            for (ulong start = piece.Start; start < piece.End; start += Math.Min(chunkBytes, piece.End - start)) // never wraps at the top of the space
            {
                ulong length = Math.Min(chunkBytes, piece.End - start);
                ulong bits = length / granule;
                Span<ulong> words = _scratch.AsSpan(0, (int)((bits + 63) / 64));
                words.Clear();
                _port.GetDirtyBitmap(start, length, granule, words, mode == DirtyReadMode.NoClear);
                count += Deliver(words, bits, start, sink);
            }
        }

        return count;
    }

    /// <summary>The index of the first range that ends after <paramref name="address"/>.</summary>
    private static int FirstEndingAfter(IReadOnlyList<AddressRange> ranges, ulong address)
    {
        int lo = 0, hi = ranges.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (ranges[mid].End <= address)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }
}
