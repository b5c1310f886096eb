// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Tracking;

namespace DirtyLog.Mapping;

/// <summary>
/// One IO address space (an IOAS, a vIOMMU domain, a device group): its IOVA to guest-page map, the IOVA trackers
/// that watch it, and the ordered operations that change the map without losing a dirty page.
/// </summary>
/// <remarks>
/// <para><b>Reads.</b> <see cref="ReadDirty(IDirtyTracker, DirtyReadMode)"/> reads a tracker and translates each run of dirty IOVA into guest
/// pages of the shared bitmap, with the map in force during the read. Reads of different trackers run concurrently;
/// <see cref="TryTranslate"/> too.</para>
/// <para><b>Changes, and their order.</b> <see cref="Map"/>, <see cref="Unmap"/> and <see cref="Remap"/> exclude
/// reads for their whole duration, so a read never translates with a half-changed map. An unmap (and a remap, which is
/// a vIOMMU invalidation that changes the translation) does, in this order:</para>
/// <list type="number">
/// <item>reads every started IOMMU tracker over the range, without clearing when it can: the unmap drops the IOMMU's
/// dirty bits, and the mapping being removed is still in the table to translate them;</item>
/// <item>unmaps in the backend: from now on DMA to the range faults;</item>
/// <item>removes the mappings from the table but keeps them for</item>
/// <item>reading every started device tracker over the range, translating with the removed mappings: only the unmap
/// guarantees the device stopped writing there, and the device's log survives the unmap;</item>
/// <item>and, for a remap, maps the new translation. Bits logged at the IOVA later belong to the new mapping.</item>
/// </list>
/// <para>Writes that race an IOMMU-tracked unmap between steps 1 and 2 are the guest's to avoid (a driver quiesces
/// DMA before it unmaps, and the IOMMU offers no atomic read-and-unmap); device-tracked DMA may race the unmap freely.
/// A device read that fails leaves its tracker faulted; the removed mappings' guest pages are then marked dirty
/// (counted in <see cref="ConservativePages"/>), so nothing is lost.</para>
/// <para><b>Device ranges.</b> Device trackers track whole 1 GiB blocks of IOVA that hold mappings. A mapping in a
/// block the device does not track yet re-plans it (refused up front, map unchanged, when the device's limits cannot
/// fit the new ranges) and, if it is started, re-arms it: read, stop, start with the new ranges. A write the device
/// logs between that read and the stop would be lost with the old log, so the guest pages it could reach are marked
/// dirty (counted). A started device's tracked ranges never shrink; an unmap only stops counting the block for the next plan.</para>
/// <para>Memory grows with the mappings (about 40 bytes each) and the blocks they touch, never with the IOVAs' width.</para>
/// <para><b>Locks, in the order they are taken.</b> (1) This address space's reader-writer lock: it guards the mapping
/// table, the block counts and the lists of attached trackers; reads and <see cref="TryTranslate"/> hold it shared, map
/// changes exclusive (recursively shared inside them, for their sync reads). (2) A tracker's own lock
/// (<see cref="DirtyTrackerBase"/>), which serialises its facility. Never the reverse: a read of an attached
/// <see cref="IommuTracker"/>, even one made directly on the tracker, takes this address space's lock before the
/// tracker's, because the tracker asks this map which ranges to read (asserted in debug builds). Device trackers never
/// call back into the map. Neither lock is held while user callbacks run, except the sink of a read.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The lock lives as long as the address space, which the correlator keeps for the whole migration; its wait handles go with the finalizer-free GC.")]
public sealed class IoAddressSpace : IMappedRangeSource
{
    /// <summary>The IOVA block device trackers track at once.</summary>
    public const ulong DeviceBlockSize = 1UL << 30;

    // Recursion: an unmap holds the write lock while its sync read asks this map for the ranges to read.
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.SupportsRecursion);
    private readonly MappingTable _table = new();
    private readonly Dictionary<ulong, int> _blocks = new(); // mappings per 1 GiB block of IOVA
    private readonly List<IommuTracker> _iommuTrackers = [];
    private readonly List<DeviceTracker> _deviceTrackers = [];
    private readonly SparseDirtyBitmap _target;
    private readonly IIoMapBackend _backend;
    private long _conservativePages;
    private long _untranslatedBytes;
    private long _rearms;

    internal IoAddressSpace(uint id, IIoMapBackend backend, SparseDirtyBitmap target)
    {
        Id = id;
        _backend = backend;
        _target = target;
    }

    /// <summary>The address space's id (the IOAS or domain id).</summary>
    public uint Id { get; }

    /// <summary>Mappings in force.</summary>
    public int MappingCount => Locked(read: true, () => _table.Count);

    /// <summary>Guest pages marked dirty without a tracker reporting them: re-arms and failed syncs (never loss).</summary>
    public long ConservativePages => Interlocked.Read(ref _conservativePages);

    /// <summary>Dirty IOVA bytes reported where nothing was mapped (logged after an unmap, or by a faulting DMA): dropped.</summary>
    public long UntranslatedBytes => Interlocked.Read(ref _untranslatedBytes);

    /// <summary>Device trackers re-armed because a mapping fell outside their ranges.</summary>
    public long Rearms => Interlocked.Read(ref _rearms);

    /// <summary>Test hook: a wrong ordering the stress test must catch.</summary>
    internal UnmapOrdering Ordering { get; set; }

    /// <summary>A snapshot of the mappings, in IOVA order.</summary>
    /// <returns>The mappings.</returns>
    public IovaMapping[] GetMappings() => Locked(read: true, () => _table.All().ToArray());

    /// <summary>Translates one IOVA with the map in force.</summary>
    /// <param name="iova">The IOVA.</param>
    /// <param name="guestAddress">Its guest-physical address, when mapped.</param>
    /// <returns>Whether <paramref name="iova"/> is mapped.</returns>
    public bool TryTranslate(ulong iova, out ulong guestAddress)
    {
        _lock.EnterReadLock();
        try
        {
            bool found = _table.TryFind(iova, out IovaMapping m);
            guestAddress = found ? m.Translate(iova) : 0;
            return found;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>Attaches the IOMMU tracker of this address space's HWPT; its mapped ranges follow the map from now on.</summary>
    /// <param name="tracker">The tracker, in this address space.</param>
    /// <exception cref="ArgumentException">The tracker reports another address space, or is attached already.</exception>
    public void Attach(IommuTracker tracker)
    {
        CheckTracker(tracker);
        Locked(read: false, () =>
        {
            _iommuTrackers.Add(tracker);
            tracker.RangeSource = this;
            return 0;
        });
    }

    /// <summary>Attaches a device tracker; it tracks the 1 GiB blocks that hold mappings from its next start.</summary>
    /// <param name="tracker">The tracker, in this address space.</param>
    /// <exception cref="ArgumentException">The tracker reports another address space, or is attached already.</exception>
    public void Attach(DeviceTracker tracker)
    {
        CheckTracker(tracker);
        Locked(read: false, () =>
        {
            _deviceTrackers.Add(tracker);
            tracker.SetMappedRanges(BlockRanges(_blocks.Keys));
            return 0;
        });
    }

    /// <summary>Reads a tracker of this address space and marks the guest pages behind its dirty IOVAs in the shared bitmap.</summary>
    /// <param name="tracker">An attached tracker.</param>
    /// <param name="mode">Clear for a harvest round; no-clear to peek where the tracker can.</param>
    /// <returns>Guest pages marked.</returns>
    /// <exception cref="DirtyTrackerException">The read failed: the tracker is faulted.</exception>
    public ulong ReadDirty(IDirtyTracker tracker, DirtyReadMode mode) => ReadDirty(tracker, mode, _target);

    /// <summary>As the public read, translating into <paramref name="target"/> (a harvest worker's own bitmap).</summary>
    internal ulong ReadDirty(IDirtyTracker tracker, DirtyReadMode mode, SparseDirtyBitmap target)
    {
        ArgumentNullException.ThrowIfNull(tracker);
        _lock.EnterReadLock();
        try
        {
            AddressRange hull = tracker is IommuTracker ? _table.Hull() : Hull(tracker.Coverage);
            return ReadOver(tracker, hull, _table, mode, target);
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>Marks every mapped guest page dirty in <paramref name="target"/> (a tracker that failed its round).</summary>
    internal void MarkAllMapped(SparseDirtyBitmap target)
    {
        _lock.EnterReadLock();
        try
        {
            foreach (IovaMapping m in _table.All())
            {
                TranslatingSink.MarkBytes(target, m.GuestAddress, m.Length);
            }
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

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
        CheckRange(iova, length, nameof(length));
        CheckGuest(guestAddress, length);
        if (_table.Overlaps(iova, iova + length))
        {
            throw new ArgumentException($"IOVA [0x{iova:x}, 0x{iova + length:x}) overlaps a mapping of address space {Id}.", nameof(iova));
        }

        // New blocks for the device trackers: plan them before anything changes, so a device that cannot track
        // them refuses the map rather than leaving it untracked. Until the backend has mapped, every device's ranges
        // can go back to what they were.
        ulong[] newBlocks = BlocksOf(iova, length).Where(b => !_blocks.ContainsKey(b)).ToArray();
        List<DeviceTracker> rearm = [];
        var before = new List<(DeviceTracker Device, IReadOnlyList<AddressRange> Ranges)>();
        try
        {
            if (newBlocks.Length != 0)
            {
                AddressRange[] ranges = BlockRanges(_blocks.Keys.Concat(newBlocks));
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
        foreach (ulong block in BlocksOf(m.Iova, m.Length))
        {
            _blocks[block] = _blocks.GetValueOrDefault(block) + 1;
        }
    }

    /// <summary>The ordered unmap (see the remarks); <paramref name="removedParts"/>, when given, receives the parts of mappings unmapped, which a failed remap puts back.</summary>
    private ulong UnmapLocked(ulong iova, ulong length, UnmapSync sync, List<IovaMapping>? removedParts)
    {
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

        if (Ordering == UnmapOrdering.DeviceReadBeforeUnmap && sync == UnmapSync.Sync)
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

            foreach (ulong block in BlocksOf(m.Iova, m.Length))
            {
                if (--_blocks[block] == 0)
                {
                    _blocks.Remove(block);
                }
            }
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
            if (device.State != DirtyTrackerState.Started || (Ordering == UnmapOrdering.DeviceReadBeforeUnmap && sync == UnmapSync.Sync))
            {
                continue;
            }

            if (sync == UnmapSync.Sync)
            {
                SyncOrMark(device, new AddressRange(iova, length), Ordering == UnmapOrdering.TranslateWithNewMap ? _table : removed, victims, DirtyReadMode.Clear);
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

    private ulong ReadOver(IDirtyTracker tracker, AddressRange range, MappingTable table, DirtyReadMode mode, SparseDirtyBitmap? target = null)
    {
        if (range.IsEmpty || tracker.State != DirtyTrackerState.Started)
        {
            return 0;
        }

        var sink = new TranslatingSink(table, target ?? _target);
        tracker.ReadDirty(range, sink, mode);
        if (sink.UntranslatedBytes != 0)
        {
            Interlocked.Add(ref _untranslatedBytes, (long)sink.UntranslatedBytes);
        }

        return sink.PagesMarked;
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

    private void CheckTracker(IDirtyTracker tracker)
    {
        ArgumentNullException.ThrowIfNull(tracker);
        if (tracker.AddressSpace != DirtyAddressSpace.Iova(Id))
        {
            throw new ArgumentException($"{tracker.Name} reports {tracker.AddressSpace}, not IOVA space {Id}.", nameof(tracker));
        }

        if (_iommuTrackers.Contains(tracker) || _deviceTrackers.Contains(tracker))
        {
            throw new ArgumentException($"{tracker.Name} is attached already.", nameof(tracker));
        }
    }

    private void CheckRange(ulong iova, ulong length, string paramName)
    {
        ulong align = _backend.IovaAlignment;
        if (length == 0 || ((iova | length) & (align - 1)) != 0)
        {
            throw new ArgumentException($"IOVA 0x{iova:x} + 0x{length:x} is empty or not aligned to {align} bytes.", paramName);
        }

        if (iova + length < iova && iova + length != 0)
        {
            throw new ArgumentException($"IOVA 0x{iova:x} + 0x{length:x} wraps around.", paramName);
        }

        if (iova + length == 0)
        {
            throw new ArgumentException($"IOVA 0x{iova:x} + 0x{length:x} reaches the end of the 64-bit space.", paramName);
        }
    }

    private void CheckGuest(ulong guestAddress, ulong length)
    {
        // In pages, not bytes: a 64-bit bitmap's byte size (2^64) does not fit a ulong.
        ulong last = guestAddress + length - 1;
        if ((guestAddress & (_backend.IovaAlignment - 1)) != 0 || length == 0 || last < guestAddress
            || (last >> _target.PageShift) >= _target.PageCount)
        {
            throw new ArgumentException($"Guest range 0x{guestAddress:x} + 0x{length:x} is unaligned or outside the shared bitmap's {_target.AddressWidth}-bit address space.", nameof(guestAddress));
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

    private static IEnumerable<ulong> BlocksOf(ulong iova, ulong length)
    {
        for (ulong b = iova / DeviceBlockSize; b <= (iova + length - 1) / DeviceBlockSize; b++)
        {
            yield return b;
        }
    }

    private static AddressRange[] BlockRanges(IEnumerable<ulong> blocks)
    {
        var result = new List<AddressRange>();
        foreach (ulong b in blocks.Order())
        {
            if (result.Count > 0 && result[^1].End == b * DeviceBlockSize)
            {
                result[^1] = new AddressRange(result[^1].Start, result[^1].Length + DeviceBlockSize);
            }
            else
            {
                result.Add(new AddressRange(b * DeviceBlockSize, DeviceBlockSize));
            }
        }

        return [.. result];
    }

    private static AddressRange Hull(IReadOnlyList<AddressRange> ranges) =>
        ranges.Count == 0 ? default : new AddressRange(ranges[0].Start, ranges[^1].End - ranges[0].Start);

    /// <inheritdoc/>
    IReadOnlyList<AddressRange> IMappedRangeSource.MappedWithin(AddressRange range) =>
        Locked(read: true, () =>
        {
            var overlapping = new List<IovaMapping>();
            _table.CollectOverlapping(range.Start, range.End, overlapping);
            return Join(overlapping);
        });

    /// <inheritdoc/>
    void IMappedRangeSource.EnterRead() => _lock.EnterReadLock();

    /// <inheritdoc/>
    void IMappedRangeSource.ExitRead() => _lock.ExitReadLock();

    /// <inheritdoc/>
    bool IMappedRangeSource.IsHeldByCurrentThread => _lock.IsReadLockHeld || _lock.IsWriteLockHeld || _lock.IsUpgradeableReadLockHeld;

    /// <inheritdoc/>
    IReadOnlyList<AddressRange> IMappedRangeSource.AllMapped() => Locked(read: true, () => Join(_table.All()));

    private static List<AddressRange> Join(IEnumerable<IovaMapping> mappings)
    {
        var result = new List<AddressRange>();
        foreach (IovaMapping m in mappings)
        {
            if (result.Count > 0 && result[^1].End == m.Iova)
            {
                result[^1] = new AddressRange(result[^1].Start, result[^1].Length + m.Length);
            }
            else
            {
                result.Add(new AddressRange(m.Iova, m.Length));
            }
        }

        return result;
    }

    private T Locked<T>(bool read, Func<T> action)
    {
        if (read)
        {
            _lock.EnterReadLock();
        }
        else
        {
            _lock.EnterWriteLock();
        }

        try
        {
            return action();
        }
        finally
        {
            if (read)
            {
                _lock.ExitReadLock();
            }
            else
            {
                _lock.ExitWriteLock();
            }
        }
    }
}
