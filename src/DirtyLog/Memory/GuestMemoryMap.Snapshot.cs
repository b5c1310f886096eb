// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Tracking;

namespace DirtyLog.Memory;

public sealed partial class GuestMemoryMap
{
    /// <summary>
    /// Enters the current regions for one page copy: until <see cref="Exit"/>, a <see cref="Remove"/> of any of them
    /// waits. Never held across an await.
    /// </summary>
    /// <remarks>
    /// The reader counts itself in, then looks again: if the snapshot is still current, a remover's exchange comes
    /// after the count and the remover sees it; if not, the reader backs out and takes the new one. Both steps are
    /// full fences (an interlocked add, an interlocked exchange), so one of the two always sees the other.
    /// </remarks>
    internal Snapshot Enter()
    {
        while (true)
        {
            Snapshot now = Volatile.Read(ref _current);
            Interlocked.Increment(ref now.Readers);
            if (ReferenceEquals(now, Volatile.Read(ref _current)))
            {
                return now;
            }

            Interlocked.Decrement(ref now.Readers);
        }
    }

    /// <summary>Leaves a snapshot entered with <see cref="Enter"/>.</summary>
    internal static void Exit(Snapshot snapshot) => Interlocked.Decrement(ref snapshot.Readers);

    /// <summary>The index of the region of <paramref name="regions"/> (sorted, disjoint) that holds <paramref name="address"/>, or -1.</summary>
    internal static int IndexOf(ReadOnlySpan<HostMemoryRegion> regions, ulong address)
    {
        int low = 0, high = regions.Length - 1;
        while (low <= high)
        {
            int middle = (low + high) >>> 1;
            HostMemoryRegion region = regions[middle];
            if (address < region.GuestAddress)
            {
                high = middle - 1;
            }
            else if (address - region.GuestAddress >= region.Length)
            {
                low = middle + 1;
            }
            else
            {
                return middle;
            }
        }

        return -1;
    }

    /// <summary>The regions at one instant, sorted by guest-physical address; immutable but for its count of readers.</summary>
    internal sealed class Snapshot(HostMemoryRegion[] regions, long version)
    {
        public int Readers;

        public HostMemoryRegion[] Regions { get; } = regions;

        public long Version { get; } = version;

        public ulong Size { get; } = Sum(regions);

        /// <summary>The index of the region that holds <paramref name="address"/>, or -1.</summary>
        public int IndexOf(ulong address) => GuestMemoryMap.IndexOf(Regions, address);

        /// <summary>The index of a region overlapping [<paramref name="address"/>, + <paramref name="length"/>), or -1.</summary>
        public int IndexOverlapping(ulong address, ulong length)
        {
            for (int i = 0; i < Regions.Length; i++)
            {
                HostMemoryRegion r = Regions[i];
                if (address < r.GuestAddress + r.Length && r.GuestAddress < address + length)
                {
                    return i;
                }
            }

            return -1;
        }

        private static ulong Sum(HostMemoryRegion[] regions)
        {
            ulong size = 0;
            foreach (HostMemoryRegion region in regions)
            {
                size += region.Length;
            }

            return size;
        }
    }
}
