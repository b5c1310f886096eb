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
/// <para><b>Thread safety.</b> Every member may be called from any thread: reads of different trackers and
/// <see cref="TryTranslate"/> run at once; a map, unmap or remap excludes reads and other changes of this space.</para>
/// <para><b>Locks, in the order they are taken.</b> (1) This address space's reader-writer lock: it guards the mapping
/// table, the block counts and the lists of attached trackers; reads and <see cref="TryTranslate"/> hold it shared, map
/// changes exclusive (recursively shared inside them, for their sync reads). (2) A tracker's own lock
/// (<see cref="DirtyTrackerBase"/>), which serialises its facility. Never the reverse: a read of an attached
/// <see cref="IommuTracker"/>, even one made directly on the tracker, takes this address space's lock before the
/// tracker's, because the tracker asks this map which ranges to read (asserted in debug builds). Device trackers never
/// call back into the map. Neither lock is held while user callbacks run, except the sink of a read.</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The lock lives as long as the address space, which the correlator keeps for the whole migration; its wait handles go with the finalizer-free GC.")]
public sealed partial class IoAddressSpace : IMappedRangeSource
{
    /// <summary>The IOVA block device trackers track at once.</summary>
    public const ulong DeviceBlockSize = DeviceBlockCounts.BlockSize;

    // Recursion: an unmap holds the write lock while its sync read asks this map for the ranges to read.
    private readonly ReaderWriterLockSlim _lock = new(LockRecursionPolicy.SupportsRecursion);
    private readonly MappingTable _table = new();
    private readonly DeviceBlockCounts _blocks = new(); // mappings per 1 GiB block of IOVA, for the device trackers
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
            tracker.SetMappedRanges(_blocks.Ranges());
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
