// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Tracking;

/// <summary>
/// Pages written by vCPUs, from KVM's per-vCPU dirty rings, in guest-physical space.
/// </summary>
/// <remarks>
/// <para>A reap harvests every ring in order (acquire loads of each entry's flags, a release store marking it for
/// reset), decodes <c>(as_id, slot, offset)</c> through the VM's slot table into a pending bitmap per slot (a plain
/// bitmap under the tracker's lock, 32 KiB per GiB of slot, with a summary that lets reads skip clean parts), then calls
/// <c>KVM_RESET_DIRTY_RINGS</c>; a read reaps and hands over the pending pages. Reaps happen on every read, when the VMM's
/// run loop hands over a <c>KVM_EXIT_DIRTY_RING_FULL</c> (<see cref="Reap"/>), and from a reaper at a cadence if the VMM
/// runs one (QEMU does): a ring must never fill between reaps.</para>
/// <para><b>Never silent loss.</b> On this kind of host the soft-full limit was measured not to hold within one
/// <c>KVM_RUN</c>: a run that dirtied more pages than the ring holds lost entries. So a reap that finds a ring at or past
/// its soft limit (entries minus KVM's 64 reserved and a 512-entry PML batch) treats the ring as possibly overflowed:
/// it marks every slot of the VM dirty and counts it in <see cref="Overflows"/>. Over-reporting, never loss.</para>
/// <para><b>A ring out of step.</b> KVM does not refuse a push onto a full ring: it warns and overwrites the oldest
/// entry. A run that pushes more than a lap leaves kernel indices whose entries KVM's reset already recycled, and both
/// the harvest and the reset stop at them: nothing is harvested again and, once the ring counts its soft limit, every
/// <c>KVM_RUN</c> returns <c>KVM_EXIT_DIRTY_RING_FULL</c> (the wedge measured on these hosts). After a reap that may
/// have overflowed, and at every ring-full exit that found nothing, the tracker skips those entries once live entries
/// show behind them (<see cref="IKvmDirtyRingPort.SkipRecycledEntries"/>), marks every slot dirty (the overflow lost
/// entries) and counts it in <see cref="Resynchronizations"/>. A ring that cannot be brought back in step (every entry
/// recycled and the vCPU refused entry) is told to the run loop as <see cref="DirtyRingFullOutcome.Wedged"/>: it must
/// stop running the vCPU in ring mode; every slot is marked dirty, so nothing is lost. A run loop must call
/// <see cref="HandleRingFull"/>, never <see cref="Reap"/>, on a ring-full exit: only it can tell a wedge.</para>
/// <para><b>The reaper.</b> Given a reap interval, the tracker runs one background thread while it tracks that reaps
/// at that cadence, as QEMU's reaper does: the rings are emptied while the vCPUs run, long before a ring fills. A reap
/// that fails stops the reaper and faults the tracker at its next read (its coverage must then be treated as dirty).</para>
/// <para><b>Slots come and go while tracking</b>, as the port tells (<see cref="IKvmSlotPort.WatchSlots"/>): before a
/// slot is removed every ring is reaped while the slot still decodes, and its pages are kept for the next read; a slot
/// added is logged and reported entirely dirty. Entries that name a slot the table no longer has (the guest wrote it
/// between that reap and the deletion) are counted in <see cref="UnknownEntries"/> and mark every slot dirty.</para>
/// <para>Thread safety: <see cref="Reap"/> and <see cref="HandleRingFull"/> may be called from the vCPU threads and the
/// reaper while reads run elsewhere; they are serialised by the ring lock, which is held only for harvests and
/// <c>KVM_RESET_DIRTY_RINGS</c> (what a vCPU at a ring-full exit waits for anyway), never for a slot change, a join or
/// a wait. Lock order: the tracker's life-cycle lock and its read lock (<see cref="DirtyTrackerBase"/>), then the
/// port's slot watchers, then the ring lock. The reaper is stopped and joined outside every lock. Counters may be read
/// from any thread at any time. Reads of page contents must follow the read that reported them (the reset re-protects
/// first).</para>
/// </remarks>
public sealed class KvmDirtyRingTracker : DirtyTrackerBase
{
    private const uint ReservedEntries = 64 + 512;

    private readonly IKvmDirtyRingPort _port;
    // Lock order: the tracker's locks (DirtyTrackerBase), then the port's slot watchers, then _ringGate; reaps from the
    // run loop and the reaper take _ringGate alone. Nothing under _ringGate waits for anything but the rings' ioctls.
    private readonly Lock _ringGate = new();
    private readonly RingEntryDecoder _decoder = new(); // under _ringGate
    private readonly IDisposable _watch;
    private bool _tracking; // under _ringGate
    // Serialises slot additions with start and stop, so that no ioctl of theirs runs under _ringGate. Lock order:
    // the port's slot watchers, then _slotGate, then _ringGate.
    private readonly Lock _slotGate = new();
    private bool _loggingSlots; // under _slotGate
    private static readonly TimeSpan ReaperStopTimeout = TimeSpan.FromSeconds(30);
    private int _emptyRingFullReaps; // ring-full exits in a row whose reap found nothing; under _ringGate
    private bool[] _mayBeOutOfStep = []; // per ring: its last reap may have overflowed; under _ringGate
    private bool _wedged;
    private long _ringFullExits;
    private long _resynchronizations;
    private int _lastResetCount;
    private readonly ulong[] _scratch = new ulong[4096];
    private long _overflows;
    private long _entries;
    private long[] _vcpuEntries = []; // per ring, grown under _ringGate, read by any thread
    private long _unknownEntries;
    private RingReaper? _reaper; // started and stopped by the tracker's life cycle, which is serialised
    private long _reaperReaps;

    /// <summary>Creates a tracker over the dirty rings of a VM's vCPUs.</summary>
    /// <param name="port">The rings: <see cref="KvmVmPort"/> over a real VM and its vCPUs' rings, or the emulated VM of DirtyLog.Testing.</param>
    /// <param name="name">A name; <c>kvm-ring</c> by default.</param>
    /// <param name="reapInterval">The reaper's cadence while tracking; <see langword="null"/> for no reaper.</param>
    /// <exception cref="ArgumentException">The port has no ring.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="reapInterval"/> is not positive.</exception>
    public KvmDirtyRingTracker(IKvmDirtyRingPort port, string? name = null, TimeSpan? reapInterval = null)
        : base(name ?? "kvm-ring", DirtyAddressSpace.GuestPhysical, 4096)
    {
        ArgumentNullException.ThrowIfNull(port);
        if (reapInterval is { } interval)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero, nameof(reapInterval));
        }

        if (port.RingEntries == 0 || port.RingCount == 0)
        {
            throw new ArgumentException($"{port.Name} has no dirty ring.", nameof(port));
        }

        ReapInterval = reapInterval;
        _port = port;
        _watch = port.WatchSlots(new Watcher(this));
    }

    /// <summary>The reaper's cadence, or <see langword="null"/> when the tracker runs none.</summary>
    public TimeSpan? ReapInterval { get; }

    /// <summary>Reaps done by the reaper thread.</summary>
    public long ReaperReaps => Interlocked.Read(ref _reaperReaps);

    /// <summary>Reaps that found a ring at or past its soft limit and marked every slot dirty instead.</summary>
    public long Overflows => Interlocked.Read(ref _overflows);

    /// <summary>What the last <c>KVM_RESET_DIRTY_RINGS</c> returned (diagnostics); safe to read from any thread.</summary>
    public int LastResetCount => Volatile.Read(ref _lastResetCount);

    /// <summary>Ring-full exits handed to <see cref="HandleRingFull"/>.</summary>
    public long RingFullExits => Interlocked.Read(ref _ringFullExits);

    /// <summary>
    /// Times a ring was found out of step after an overflow (pushed past a lap) and brought back: its recycled entries
    /// skipped and every slot marked dirty.
    /// </summary>
    public long Resynchronizations => Interlocked.Read(ref _resynchronizations);

    /// <summary>Ring entries harvested so far.</summary>
    public long EntriesHarvested => Interlocked.Read(ref _entries);

    /// <summary>
    /// Entries harvested so far from each vCPU's ring, by ring index (the vCPU's order in the port): each entry is one
    /// page that vCPU dirtied. Sampled twice, the difference over the time between is that vCPU's dirty rate, which
    /// QEMU's dirty-limit throttles per vCPU (see <c>VcpuDirtyRates</c>).
    /// </summary>
    /// <returns>A copy, one counter per ring seen so far; safe to call from any thread at any time.</returns>
    public long[] EntriesPerVcpu()
    {
        long[] counters = Volatile.Read(ref _vcpuEntries);
        var copy = new long[counters.Length];
        for (int i = 0; i < copy.Length; i++)
        {
            copy[i] = Interlocked.Read(ref counters[i]);
        }

        return copy;
    }

    /// <summary>Entries naming a slot the VM's table does not know (another address space): their slot is unknown, so every slot was marked.</summary>
    public long UnknownEntries => Interlocked.Read(ref _unknownEntries);

    /// <inheritdoc/>
    /// <remarks>The VM's slots, and slots removed or moved whose pages are not read yet.</remarks>
    public override IReadOnlyList<AddressRange> Coverage
    {
        get
        {
            var ranges = _port.GetSlots().Select(s => new AddressRange(s.GuestAddress, s.Size)).ToList();
            lock (_ringGate)
            {
                foreach (PendingPages pending in _decoder.Pending)
                {
                    if (!pending.IsEmpty)
                    {
                        ranges.Add(new AddressRange(pending.FirstPage * 4096, pending.Pages * 4096));
                    }
                }
            }

            return [.. ranges.Distinct().OrderBy(r => r.Start)];
        }
    }

    /// <summary>The exit reason of <c>KVM_EXIT_DIRTY_RING_FULL</c> (31), which the VMM's run loop hands to <see cref="HandleRingFull"/>.</summary>
    public const uint RingFullExitReason = DirtyLog.Native.Linux.Kvm.KvmConstants.KVM_EXIT_DIRTY_RING_FULL;

    /// <summary>Whether a ring was found wedged (<see cref="HandleRingFull"/> returned <see cref="DirtyRingFullOutcome.Wedged"/>).</summary>
    public bool IsWedged => Volatile.Read(ref _wedged);

    /// <summary>
    /// The one call a VMM's run loop makes when <c>KVM_RUN</c> returns <see cref="RingFullExitReason"/>: reaps every ring,
    /// then says whether the vCPU may run again.
    /// </summary>
    /// <returns>
    /// <see cref="DirtyRingFullOutcome.Reaped"/>: entries were harvested (or a ring out of step was brought back), run
    /// the vCPU again.
    /// <see cref="DirtyRingFullOutcome.Wedged"/>: more ring-full exits in a row than the VM has rings (two for one vCPU)
    /// found nothing to harvest and no ring to bring back in step, so KVM will keep refusing to enter (one exit per
    /// vCPU can be empty without a wedge: another thread's harvest took its entries while it waited). Every slot is marked dirty, so the next read reports
    /// the whole VM and nothing is lost; the VM cannot run on in ring mode: finish this migration with stop-and-copy,
    /// and log the next VM with the dirty bitmap (<see cref="KvmDirtyLogTracker"/>). Once wedged, every later call
    /// answers <see cref="DirtyRingFullOutcome.Wedged"/> at once, so a run loop that retries still ends.
    /// </returns>
    public DirtyRingFullOutcome HandleRingFull()
    {
        Interlocked.Increment(ref _ringFullExits);
        lock (_ringGate)
        {
            if (Volatile.Read(ref _wedged))
            {
                return DirtyRingFullOutcome.Wedged;
            }

            // Any harvest that found entries (a reaper's, a read's) resets the count inside HarvestRingsLocked: only
            // ring-full exits with nothing harvested anywhere in between count towards a wedge. A ring-full exit with
            // nothing at the fetch index is the sign of a ring out of step: every ring is checked, not only those
            // whose last reap looked like an overflow.
            if (ReapLocked(checkEveryRingForStep: true) == 0)
            {
                _emptyRingFullReaps++;
            }

            // After the last harvest that found entries, each vCPU can bring one ring-full exit whose entries another
            // harvest took first (it waited for the ring lock meanwhile); one more empty exit than there are rings can
            // only come from a ring KVM counts full with nothing in it.
            if (_emptyRingFullReaps <= _port.RingCount)
            {
                return DirtyRingFullOutcome.Reaped;
            }

            _decoder.MarkEverySlot();
            Volatile.Write(ref _wedged, true);
            return DirtyRingFullOutcome.Wedged;
        }
    }

    /// <inheritdoc/>
    public override bool CanReadWithoutClear => false;

    /// <summary>
    /// Harvests every ring into the pending pages and resets them. Call it from the run loop on
    /// <c>KVM_EXIT_DIRTY_RING_FULL</c> before re-entering the vCPU, and from a reaper at a cadence.
    /// </summary>
    /// <returns>The entries harvested.</returns>
    public int Reap()
    {
        lock (_ringGate)
        {
            return ReapLocked();
        }
    }

    private int ReapLocked(bool checkEveryRingForStep = false)
    {
        Debug.Assert(_ringGate.IsHeldByCurrentThread, "the rings are reaped under the ring lock");
        int total = HarvestRingsLocked(checkEveryRingForStep);
        Volatile.Write(ref _lastResetCount, _port.ResetDirtyRings());
        return total;
    }

    /// <inheritdoc/>
    protected override void OnStart()
    {
        // Under the slot lock: a slot added meanwhile is told after this and logged by SlotAdded.
        lock (_slotGate)
        {
            IReadOnlyList<KvmMemorySlot> slots = _port.GetSlots();
            int enabled = 0;
            try
            {
                for (; enabled < slots.Count; enabled++)
                {
                    _port.SetDirtyLogging(slots[enabled].Id, true);
                }
            }
            catch
            {
                // Not half-started: the slots already switched go back to how they were.
                for (int i = 0; i < enabled; i++)
                {
                    _port.SetDirtyLogging(slots[i].Id, slots[i].LogDirtyPages);
                }

                throw;
            }

            _loggingSlots = true;
            lock (_ringGate)
            {
                _tracking = true;
                _emptyRingFullReaps = 0;
                Array.Clear(_mayBeOutOfStep);
                Volatile.Write(ref _wedged, false);
            }
        }

        if (ReapInterval is { } interval)
        {
            _reaper = new RingReaper(
                () =>
                {
                    Reap();
                    Interlocked.Increment(ref _reaperReaps);
                },
                interval,
                $"{Name} reaper");
        }
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Runs outside the tracker's read lock (see <see cref="DirtyTrackerBase"/>): the reaper is stopped and joined
    /// (bounded) with no lock held that a vCPU or a harvest needs.
    /// </remarks>
    protected override void OnStop()
    {
        if (_reaper is { } reaper)
        {
            if (!reaper.Stop(ReaperStopTimeout))
            {
                throw new DirtyTrackerException(Name, $"its reaper did not stop within {ReaperStopTimeout.TotalSeconds:0} s (a reap is stuck in the kernel)");
            }

            _reaper = null;
        }

        lock (_slotGate)
        {
            // After this no slot change switches logging on: SlotAdded checks it under the same lock.
            _loggingSlots = false;
        }

        lock (_ringGate)
        {
            _tracking = false;
        }

        foreach (KvmMemorySlot slot in _port.GetSlots())
        {
            _port.SetDirtyLogging(slot.Id, false);
        }

        Reap();
        lock (_ringGate)
        {
            _decoder.Clear();
        }
    }

    /// <inheritdoc/>
    protected override ulong ReadCore(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode)
    {
        if (_reaper?.Fault is { } fault)
        {
            throw new DirtyTrackerException(Name, $"the reaper failed, so the rings may have filled unread; treat the coverage as dirty: {fault.Message}", fault);
        }

        ulong count = 0;
        ulong first = range.Start / 4096, end = range.End / 4096;
        ulong chunkPages = (ulong)_scratch.Length * 64;
        lock (_ringGate)
        {
            // Harvest, hand the pages over, and only then reset: the reset re-protects and flushes TLBs, after which
            // every first touch of memory is dearer on nested hosts. Page contents are read by the caller after this
            // read returns, so after the reset either way.
            HarvestRingsLocked();
            try
            {
                count = DeliverPendingLocked(first, end, chunkPages, sink);
            }
            finally
            {
                Volatile.Write(ref _lastResetCount, _port.ResetDirtyRings());
            }
        }

        return count;
    }

    private ulong DeliverPendingLocked(ulong first, ulong end, ulong chunkPages, IDirtyGranuleSink sink)
    {
        Debug.Assert(_ringGate.IsHeldByCurrentThread, "the pending pages are guarded by the ring lock");
        ulong count = 0;
        foreach (PendingPages pending in _decoder.Pending)
        {
            ulong from = Math.Max(first, pending.FirstPage), to = Math.Min(end, pending.FirstPage + pending.Pages);
            for (ulong page = from; page < to; page += Math.Min(chunkPages, to - page))
            {
                ulong pages = Math.Min(chunkPages, to - page);
                if (pending.Take(page - pending.FirstPage, pages, _scratch))
                {
                    count += Deliver(_scratch.AsSpan(0, (int)((pages + 63) / 64)), pages, page * 4096, sink);
                }
            }
        }

        // A slot that was moved, resized or deleted: its old pages go once read.
        _decoder.DropEmptyReplaced();
        return count;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        _watch.Dispose();
        base.Dispose(disposing);
    }

    private void SlotAdded(KvmMemorySlot slot)
    {
        // The ioctl runs under the slot lock only, never under the ring lock a vCPU's ring-full exit needs.
        lock (_slotGate)
        {
            if (!_loggingSlots)
            {
                return;
            }

            try
            {
                _port.SetDirtyLogging(slot.Id, true);
            }
            finally
            {
                // Marked whole after logging started, so a write before it is reported by the mark and one after it
                // by the ring; marked even when logging failed, so the failure loses nothing either.
                lock (_ringGate)
                {
                    if (_tracking)
                    {
                        _decoder.Refresh(_port);
                        _decoder.MarkSlot(slot.Id);
                    }
                }
            }
        }
    }

    private void SlotRemoving(KvmMemorySlot slot)
    {
        lock (_ringGate)
        {
            if (!_tracking)
            {
                return;
            }

            // Every ring, while the slot still decodes: its entries become its pending pages, kept for the next read.
            ReapLocked();
        }
    }

    /// <summary>The port's calls, kept off the tracker's public surface.</summary>
    private sealed class Watcher(KvmDirtyRingTracker owner) : IKvmSlotWatcher
    {
        public void OnSlotAdded(KvmMemorySlot slot) => owner.SlotAdded(slot);

        public void OnSlotRemoving(KvmMemorySlot slot) => owner.SlotRemoving(slot);
    }

    /// <summary>Harvests every ring into the pending pages, marking every slot when a ring may have overflowed; under the gate.</summary>
    private int HarvestRingsLocked(bool checkEveryRingForStep = false)
    {
        Debug.Assert(_ringGate.IsHeldByCurrentThread, "the rings are harvested under the ring lock");

        // Entries decode through the slot table as it is now; it is re-read only when it changed.
        _decoder.Refresh(_port);
        int total = 0;
        bool markAll = false;
        uint entries = _port.RingEntries;
        int rings = _port.RingCount;
        long[] perVcpu = _vcpuEntries;
        if (_mayBeOutOfStep.Length < rings)
        {
            Array.Resize(ref _mayBeOutOfStep, rings);
        }

        if (perVcpu.Length < rings)
        {
            // vCPUs came: grow the counters, keeping the counts so far (readers see either array whole).
            var grown = new long[rings];
            Array.Copy(perVcpu, grown, perVcpu.Length);
            Volatile.Write(ref _vcpuEntries, grown);
            perVcpu = grown;
        }

        for (int ring = 0; ring < rings; ring++)
        {
            RingEntryDecoder.Recorder recorder = _decoder.NewRecorder();
            int n = _port.HarvestRing(ring, ref recorder);
            if (n == 0 && (_mayBeOutOfStep[ring] || checkEveryRingForStep) && _port.SkipRecycledEntries(ring) != 0)
            {
                // Pushed past a lap: the entries KVM still counts were recycled; the live ones are behind them. The
                // overflow itself lost entries, so every slot is marked as well.
                n = _port.HarvestRing(ring, ref recorder);
                markAll = true;
                Interlocked.Increment(ref _resynchronizations);
            }

            recorder.Flush();
            total += n;
            Interlocked.Add(ref perVcpu[ring], n);
            if ((uint)n >= entries - Math.Min(entries / 2, ReservedEntries))
            {
                markAll = true;
                Interlocked.Increment(ref _overflows);
                _mayBeOutOfStep[ring] = true; // until a harvest finds the ring in step
            }
            else if (n != 0)
            {
                _mayBeOutOfStep[ring] = false;
            }
        }

        if (_decoder.TakeUnknown() | markAll)
        {
            _decoder.MarkEverySlot();
        }

        Interlocked.Exchange(ref _unknownEntries, _decoder.UnknownEntries);
        Interlocked.Add(ref _entries, total);
        if (total != 0)
        {
            _emptyRingFullReaps = 0; // the rings move: not wedged
        }

        return total;
    }
}
