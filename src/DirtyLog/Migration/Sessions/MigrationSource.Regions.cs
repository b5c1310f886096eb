// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Tracking;

namespace DirtyLog.Migration.Sessions;

public sealed partial class MigrationSource
{
    private sealed partial class Run
    {
        private readonly HashSet<HostMemoryRegion> _followed = []; // regions sent whole (or marked to be): their writes are the trackers'
        private long _followedVersion = -1;                          // the map's version when _followed was last brought up to date

        /// <summary>Runs over every region the map has now, which from here on are followed.</summary>
        private DirtyRun[] FirstPassRuns(out ulong pages)
        {
            ulong pageSize = (ulong)Options.PreCopy.PageSize;
            _followedVersion = _session._memory.Version;
            IReadOnlyList<HostMemoryRegion> regions = _session._memory.Regions;
            var runs = new DirtyRun[regions.Count];
            pages = 0;
            for (int i = 0; i < regions.Count; i++)
            {
                runs[i] = new DirtyRun(regions[i].GuestAddress / pageSize, regions[i].Length / pageSize);
                pages += runs[i].PageCount;
                _followed.Add(regions[i]);
            }

            return runs;
        }

        /// <summary>
        /// Before a harvest: every page of a region plugged in since the last is marked in the shared bitmap, so this
        /// harvest reports it and the round sends it whole; its slot was declared before it was added (the VMM's order),
        /// so the trackers log every write after the mark. A region unplugged is forgotten (plugged again, it is sent again).
        /// </summary>
        private void FollowRegions()
        {
            long version = _session._memory.Version;
            if (version == _followedVersion)
            {
                return;
            }

            IReadOnlyList<HostMemoryRegion> regions = _session._memory.Regions;
            _followed.IntersectWith(regions);
            ulong pageSize = (ulong)Options.PreCopy.PageSize;
            SparseDirtyBitmap shared = _session._harvester.Shared;
            foreach (HostMemoryRegion region in regions)
            {
                if (_followed.Contains(region))
                {
                    continue;
                }

                ulong first = region.GuestAddress / pageSize, count = region.Length / pageSize;
                if ((ulong)shared.PageSize != pageSize || first + count > shared.PageCount)
                {
                    throw new MigrationException(_phase, $"the region plugged in at 0x{region.GuestAddress:x} (+{region.Length:N0} bytes) does not fit the harvester's shared bitmap ({shared.PageCount:N0} pages of {shared.PageSize} bytes)");
                }

                shared.MarkRange(first, count);
                _followed.Add(region);
            }

            _followedVersion = version;
        }

        /// <summary>After the pause: the regions the final harvest followed are still the map's, so the image the destination gets is whole.</summary>
        private void CheckRegionsUnchanged()
        {
            if (_session._memory.Version != _followedVersion)
            {
                throw new MigrationException(MigrationPhase.StopCopy, "guest memory was plugged in or out while the guest was paused for the switch-over: the image sent may miss a region");
            }
        }
    }
}
