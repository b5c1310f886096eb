// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using DirtyLog.Tracking;

namespace DirtyLog.Mapping;

/// <summary>The ordered map changes: map, unmap and remap, each rolled back on failure, and the device re-arm.</summary>
public sealed partial class IoAddressSpace
{
    /// <summary>Maps <paramref name="length"/> bytes of IOVA onto guest memory, in the backend and in the table.</summary>
    /// <param name="iova">The IOVA, aligned.</param>
    /// <param name="guestAddress">The guest-physical address, aligned and inside the shared bitmap's space.</param>
    /// <param name="length">Bytes, aligned, not zero.</param>
    /// <exception cref="ArgumentException">Unaligned, empty, wrapping, out of the guest space, or overlapping a mapping: nothing changed.</exception>
    /// <exception cref="DeviceTrackingPlanException">A device cannot track the new ranges: nothing changed.</exception>
    /// <exception cref="Exception">
    /// Whatever the backend throws when it refuses the map (<see cref="Native.KernelException"/> for iommufd): nothing
    /// changed, the device trackers' ranges included.
    /// </exception>
    /// <exception cref="DirtyTrackerException">
    /// The map is in force, but a started device tracker whose ranges it extended could not be re-armed: that
    /// tracker is faulted or stopped, and every guest page it could reach was marked dirty.
    /// </exception>
    public void Map(ulong iova, ulong guestAddress, ulong length) =>
        Locked(read: false, () =>
        {
            MapLocked(iova, guestAddress, length);
            return 0;
        });

    /// <summary>Unmaps whole mappings in [<paramref name="iova"/>, <paramref name="iova"/> + <paramref name="length"/>), syncing their dirty pages first (see the remarks for the order).</summary>
    /// <param name="iova">The IOVA, aligned.</param>
    /// <param name="length">Bytes, aligned, not zero.</param>
    /// <param name="sync"><see cref="UnmapSync.Sync"/>, or <see cref="UnmapSync.Discard"/> for memory that goes away.</param>
    /// <returns>Bytes unmapped; 0 when nothing was mapped there.</returns>
    /// <exception cref="ArgumentException">Unaligned, empty or wrapping, or cutting a mapping the backend cannot cut: nothing changed.</exception>
    /// <exception cref="Exception">
    /// Whatever the backend throws when it refuses the unmap: the map is unchanged, and the IOMMU trackers' dirty bits
    /// are still in the IOMMU (read without clearing) or already in the shared bitmap: nothing is lost.
    /// </exception>
    public ulong Unmap(ulong iova, ulong length, UnmapSync sync = UnmapSync.Sync) =>
        Locked(read: false, () => UnmapLocked(iova, length, sync, null));

    /// <summary>
    /// A vIOMMU invalidation that changes the translation of whole mappings: the old translation is synced as by
    /// <see cref="Unmap"/>, then the range maps onto <paramref name="newGuestAddress"/>; reads see the old map or
    /// the new one, never a mix.
    /// </summary>
    /// <param name="iova">The IOVA, aligned.</param>
    /// <param name="length">Bytes, aligned, not zero.</param>
    /// <param name="newGuestAddress">The new guest-physical address.</param>
    /// <exception cref="ArgumentException">As for <see cref="Unmap"/> and <see cref="Map"/>; checked before anything changes.</exception>
    /// <exception cref="Exception">
    /// Whatever the backend throws when it refuses the unmap or the new map: the old translation is in force again
    /// (its dirty pages were synced into the shared bitmap, so none is lost).
    /// </exception>
    /// <exception cref="AggregateException">The new map was refused and restoring the old one failed too: the part not restored is unmapped.</exception>
    public void Remap(ulong iova, ulong length, ulong newGuestAddress) =>
        Locked(read: false, () =>
        {
            CheckRange(iova, length, nameof(length));
            CheckGuest(newGuestAddress, length);
            var removed = new List<IovaMapping>();
            UnmapLocked(iova, length, UnmapSync.Sync, removed);
            try
            {
                MapLocked(iova, newGuestAddress, length);
            }
            catch (Exception mapFailure)
            {
                // The new translation was refused: the old one goes back, so that the remap changed nothing. Its dirty
                // pages were synced by the unmap, so nothing is lost either way.
                try
                {
                    foreach (IovaMapping m in removed)
                    {
                        _backend.Map(m.Iova, m.GuestAddress, m.Length);
                        AddToTable(m);
                    }
                }
                catch (Exception restoreFailure)
                {
                    throw new AggregateException(
                        $"Remapping IOVA 0x{iova:x} + 0x{length:x} failed, and so did restoring the old translation: the part not restored is unmapped (DMA to it faults).",
                        mapFailure,
                        restoreFailure);
                }

                throw;
            }

            return 0;
        });

    private void MapLocked(ulong iova, ulong guestAddress, ulong length)
    {
        Debug.Assert(_lock.IsWriteLockHeld, "a map change holds the address space's write lock");
        CheckRange(iova, length, nameof(length));
        CheckGuest(guestAddress, length);
        if (_table.Overlaps(iova, iova + length))
        {
            throw new ArgumentException($"IOVA [0x{iova:x}, 0x{iova + length:x}) overlaps a mapping of address space {Id}.", nameof(iova));
        }

        // New blocks for the device trackers: plan them before anything changes, so a device that cannot track
        // them refuses the map rather than leaving it untracked. Until the backend has mapped, every device's ranges
        // can go back to what they were.
        ulong[] newBlocks = _blocks.NewBlocks(iova, length);
        List<DeviceTracker> rearm = [];
        var before = new List<(DeviceTracker Device, IReadOnlyList<AddressRange> Ranges)>();
        try
        {
            if (newBlocks.Length != 0)
            {
                AddressRange[] ranges = _blocks.Ranges(newBlocks);
                foreach (DeviceTracker device in _deviceTrackers)
                {
                    before.Add((device, device.MappedRanges));
                    device.SetMappedRanges(ranges);
                    device.Plan();
                    if (device.State == DirtyTrackerState.Started && !Covers(device.Coverage, iova, length))
                    {
                        rearm.Add(device);
                    }
                }
            }

            _backend.Map(iova, guestAddress, length);
        }
        catch
        {
            foreach ((DeviceTracker device, IReadOnlyList<AddressRange> old) in before)
            {
                device.SetMappedRanges(old);
            }

            throw;
        }

        AddToTable(new IovaMapping(iova, guestAddress, length));
        foreach (DeviceTracker device in rearm)
        {
            Rearm(device);
        }
    }

    /// <summary>Adds a mapping to the table and counts it in its blocks.</summary>
    private void AddToTable(IovaMapping m)
    {
        _table.Add(m);
        _blocks.Add(m.Iova, m.Length);
    }

    /// <summary>The ordered unmap (see the remarks); <paramref name="removedParts"/>, when given, receives the parts of mappings unmapped, which a failed remap puts back.</summary>
    private ulong UnmapLocked(ulong iova, ulong length, UnmapSync sync, List<IovaMapping>? removedParts)
    {
        Debug.Assert(_lock.IsWriteLockHeld, "a map change holds the address space's write lock");
        CheckRange(iova, length, nameof(length));
        ulong end = iova + length;
        var victims = new List<IovaMapping>();
        _table.CollectOverlapping(iova, end, victims);
        if (victims.Count == 0)
        {
            return 0;
        }

        bool cuts = victims[0].Iova < iova || victims[^1].End > end;
        if (cuts && !_backend.AllowsPartialUnmap)
        {
            throw new ArgumentException($"IOVA [0x{iova:x}, 0x{end:x}) cuts a mapping of address space {Id} ({(victims[0].Iova < iova ? victims[0] : victims[^1])}), which the backend cannot split.", nameof(length));
        }

        // 1. IOMMU trackers, before the unmap drops their bits, with the mapping still in the table.
        if (sync == UnmapSync.Sync)
        {
            foreach (IommuTracker tracker in _iommuTrackers)
            {
                if (tracker.State == DirtyTrackerState.Started)
                {
                    SyncOrMark(tracker, new AddressRange(iova, length), _table, victims, tracker.CanReadWithoutClear ? DirtyReadMode.NoClear : DirtyReadMode.Clear);
                }
            }
        }

        if (ReadsDevicesBeforeUnmap(sync))
        {
            foreach (DeviceTracker device in _deviceTrackers)
            {
                SyncOrMark(device, new AddressRange(iova, length), _table, victims, DirtyReadMode.Clear);
            }
        }

        // 2. The backend. If it refuses, the table is as it was and the IOMMU bits are still there (no-clear read).
        _backend.Unmap(iova, length);

        // 3. The table, keeping the removed part for the device reads.
        var removed = new MappingTable();
        ulong unmapped = 0;
        foreach (IovaMapping m in victims)
        {
            _table.Remove(m.Iova);
            ulong s = Math.Max(iova, m.Iova), e = Math.Min(end, m.End);
            removed.Add(new IovaMapping(s, m.Translate(s), e - s));
            removedParts?.Add(new IovaMapping(s, m.Translate(s), e - s));
            unmapped += e - s;

            _blocks.Remove(m.Iova, m.Length);
        }

        foreach (IovaMapping m in victims)
        {
            // What remains of a cut mapping counts again in its blocks.
            foreach (IovaMapping rest in (ReadOnlySpan<IovaMapping>)[new(m.Iova, m.GuestAddress, Math.Max(iova, m.Iova) - m.Iova), new(end, m.Translate(Math.Min(end, m.End)), m.End - Math.Min(end, m.End))])
            {
                if (rest.Length != 0)
                {
                    AddToTable(rest);
                }
            }
        }

        // 4. Device trackers, after the unmap, with the removed mappings.
        foreach (DeviceTracker device in _deviceTrackers)
        {
            if (device.State != DirtyTrackerState.Started || ReadsDevicesBeforeUnmap(sync))
            {
                continue;
            }

            if (sync == UnmapSync.Sync)
            {
                SyncOrMark(device, new AddressRange(iova, length), DeviceTranslation(removed), victims, DirtyReadMode.Clear);
            }
            else
            {
                // Unplug: clear the range's log so its bits cannot land on a later mapping of these IOVAs.
                SyncOrMark(device, new AddressRange(iova, length), new MappingTable(), [], DirtyReadMode.Clear);
            }
        }

        return unmapped;
    }

    private void Rearm(DeviceTracker device)
    {
        // Whatever it logged under the old ranges is read with the map in force; writes it logs between this read
        // and the stop would go with the old log, so the pages it could reach are marked instead.
        IReadOnlyList<AddressRange> oldCoverage = device.Coverage;
        SyncOrMark(device, Hull(oldCoverage), _table, [], DirtyReadMode.Clear);
        Interlocked.Increment(ref _rearms);
        try
        {
            device.StopTracking();
            device.StartTracking();
        }
        finally
        {
            foreach (AddressRange r in oldCoverage)
            {
                var reachable = new List<IovaMapping>();
                _table.CollectOverlapping(r.Start, r.End, reachable);
                MarkConservatively(reachable, r);
            }
        }
    }

    /// <summary>Reads a tracker over a range; if the read fails, marks the given mappings' pages dirty and rethrows nothing: the tracker is faulted and says so at its next use.</summary>
    private void SyncOrMark(IDirtyTracker tracker, AddressRange range, MappingTable table, List<IovaMapping> onFailure, DirtyReadMode mode)
    {
        try
        {
            ReadOver(tracker, range, table, mode);
        }
        catch (DirtyTrackerException)
        {
            MarkConservatively(onFailure, range);
        }
    }

    private void MarkConservatively(List<IovaMapping> mappings, AddressRange range)
    {
        foreach (IovaMapping m in mappings)
        {
            ulong s = Math.Max(range.Start, m.Iova), e = Math.Min(range.End, m.End);
            if (s < e)
            {
                Interlocked.Add(ref _conservativePages, (long)TranslatingSink.MarkBytes(_target, m.Translate(s), e - s));
            }
        }
    }

    private static bool Covers(IReadOnlyList<AddressRange> ranges, ulong start, ulong length)
    {
        foreach (AddressRange r in ranges)
        {
            if (r.Start <= start && start + length <= r.End)
            {
                return true;
            }
        }

        return false;
    }
}
