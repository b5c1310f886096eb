// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Native;

namespace DirtyLog.Testing;

/// <summary>One IO address space of the emulated IOMMU: its mappings, its HWPTs, and the lock they share.</summary>
internal sealed class EmulatedIoas
{
    private readonly EmulatedIommu _iommu;
    private readonly SortedList<ulong, IommuMapping> _mappings = new();
    private readonly List<EmulatedHwpt> _hwpts = new();

    public EmulatedIoas(EmulatedIommu iommu, uint id)
    {
        _iommu = iommu;
        Id = id;
    }

    public uint Id { get; }

    public ulong IovaAlignment => _iommu.IovaAlignment;

    public EmulatedGuestMemory Memory => _iommu.Memory;

    /// <summary>The kernel's iova rwsem: DMA and dirty reads take it shared; map, unmap and enabling exclusively.</summary>
    public ReaderWriterLockSlim Lock { get; } = new(LockRecursionPolicy.NoRecursion);

    public EmulatedHwpt AddHwpt(uint id, bool dirtyTracking)
    {
        var hwpt = new EmulatedHwpt(this, id, dirtyTracking);
        Lock.EnterWriteLock();
        try
        {
            foreach (IommuMapping mapping in _mappings.Values)
            {
                hwpt.AddEntries(mapping);
            }

            _hwpts.Add(hwpt);
        }
        finally
        {
            Lock.ExitWriteLock();
        }

        return hwpt;
    }

    public void Map(ulong iova, ulong guestAddress, ulong length, ulong maxEntrySize)
    {
        const string Request = "IOMMU_IOAS_MAP";
        if (maxEntrySize is not ((1UL << 30) or (1UL << 21) or (1UL << 12)))
        {
            throw new ArgumentOutOfRangeException(nameof(maxEntrySize), maxEntrySize, "The largest entry must be 4 KiB, 2 MiB or 1 GiB.");
        }

        if (length == 0 || ((iova | guestAddress | length) & (IovaAlignment - 1)) != 0)
        {
            throw EmulatedIommu.Error(Request, Errno.EINVAL);
        }

        if (iova + length - 1 < iova)
        {
            throw EmulatedIommu.Error(Request, Errno.EOVERFLOW);
        }

        if (_iommu.Aperture is { } aperture && (iova < aperture.Start || iova + length - 1 > aperture.Last))
        {
            // The kernel reserves everything outside the domain's aperture: a map there is EINVAL (iopt_check_iova).
            throw EmulatedIommu.Error(Request, Errno.EINVAL);
        }

        if (!Memory.Contains(guestAddress, length))
        {
            throw EmulatedIommu.Error(Request, Errno.EFAULT);
        }

        var mapping = new IommuMapping(iova, guestAddress, length, maxEntrySize);
        Lock.EnterWriteLock();
        try
        {
            if (Overlapping(iova, iova + length - 1).Count != 0)
            {
                throw EmulatedIommu.Error(Request, Errno.EEXIST);
            }

            _mappings.Add(iova, mapping);
            foreach (EmulatedHwpt hwpt in _hwpts)
            {
                hwpt.AddEntries(mapping);
            }
        }
        finally
        {
            Lock.ExitWriteLock();
        }
    }

    public ulong Unmap(ulong iova, ulong length)
    {
        const string Request = "IOMMU_IOAS_UNMAP";
        bool all = iova == 0 && length == ulong.MaxValue;
        if (!all && length == 0)
        {
            throw EmulatedIommu.Error(Request, Errno.EINVAL);
        }

        if (!all && iova + length - 1 < iova)
        {
            throw EmulatedIommu.Error(Request, Errno.EOVERFLOW);
        }

        ulong last = all ? ulong.MaxValue : iova + length - 1;
        Lock.EnterWriteLock();
        try
        {
            List<IommuMapping> victims = Overlapping(all ? 0 : iova, last);
            foreach (IommuMapping m in victims)
            {
                // Cutting a mapping is refused: the range must cover whole areas.
                if (m.Iova < iova || m.End - 1 > last)
                {
                    throw EmulatedIommu.Error(Request, Errno.ENOENT);
                }
            }

            if (victims.Count == 0 && !all)
            {
                // The kernel's rule (iopt_unmap_iova_range): unmapping a range that holds no mapping is ENOENT;
                // only unmap-all of an empty IOAS succeeds. Found by the differential test against the real iommufd.
                throw EmulatedIommu.Error(Request, Errno.ENOENT);
            }

            ulong unmapped = 0;
            foreach (IommuMapping m in victims)
            {
                _mappings.Remove(m.Iova);
                foreach (EmulatedHwpt hwpt in _hwpts)
                {
                    hwpt.RemoveEntries(m);
                }

                unmapped += m.Length;
            }

            return unmapped;
        }
        finally
        {
            Lock.ExitWriteLock();
        }
    }

    /// <summary>The mappings that intersect [<paramref name="first"/>, <paramref name="last"/>]; call under the lock.</summary>
    private List<IommuMapping> Overlapping(ulong first, ulong last)
    {
        var result = new List<IommuMapping>();
        IList<ulong> keys = _mappings.Keys;
        int lo = 0, hi = keys.Count - 1, start = keys.Count;

        // The first mapping that ends at or after `first`: mappings are disjoint and sorted, so ends are sorted too.
        while (lo <= hi)
        {
            int mid = (lo + hi) / 2;
            if (_mappings.Values[mid].End - 1 >= first)
            {
                start = mid;
                hi = mid - 1;
            }
            else
            {
                lo = mid + 1;
            }
        }

        for (int i = start; i < keys.Count && keys[i] <= last; i++)
        {
            result.Add(_mappings.Values[i]);
        }

        return result;
    }
}
