// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Tracking;

/// <summary>
/// Pages written by vCPUs, from KVM's dirty bitmaps of a VM's memory slots (all of them, or one), in guest-physical space.
/// </summary>
/// <remarks>
/// <para>Two modes, chosen by the VM: <b>classic</b> (<c>KVM_GET_DIRTY_LOG</c> fetches and re-protects in one call)
/// and <b>manual protect</b> (the VM enabled <c>KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2</c>: GET only copies, and a
/// clearing read then issues <c>KVM_CLEAR_DIRTY_LOG</c> with exactly the bits it fetched, over the whole slot, which
/// satisfies the 64-page alignment rule and its tail exception). Reading page contents must come after the read
/// returns: a write between GET and CLEAR is caught by the re-protection. A no-clear read is possible in manual mode.</para>
/// <para>Starting and stopping toggle <c>KVM_MEM_LOG_DIRTY_PAGES</c> on the slots, or leave it to the VMM
/// (<see cref="DirtyLoggingControl.ByVmm"/>). KVM's log is per slot, so a read reports each slot it touches whole,
/// whatever part of it the range covers (a classic read clears it all; dropping the rest would lose it).</para>
/// <para><b>Slots come and go while tracking</b> (memory hotplug and unplug, a slot moved or resized), as the port
/// tells (<see cref="IKvmSlotPort.WatchSlots"/>): a slot about to be removed is harvested at once and its pages kept
/// for the next read (its range stays in <see cref="Coverage"/> until then); a slot added is logged and reported
/// entirely dirty by the next read, since none of it was ever sent.</para>
/// <para>Thread safety: as <see cref="IDirtyTracker"/>; slot changes may come from any thread, concurrently with reads.
/// Lock order: the tracker's own lock, then the port's slot watchers, then this tracker's slot lock.</para>
/// </remarks>
public sealed class KvmDirtyLogTracker : DirtyTrackerBase, IClearBeforeSend
{
    private readonly IKvmDirtyLogPort _port;
    private readonly uint? _onlySlot;
    private readonly Lock _slotGate = new();
    private readonly Dictionary<uint, SlotLog> _logs = new(); // the slots logging now; under _slotGate
    private SlotLog[] _inOrder = [];                          // _logs by guest address, for reads; under _slotGate
    private readonly List<SlotLog> _removed = [];           // harvested at their removal, not yet read; under _slotGate
    private readonly IDisposable _watch;
    private bool _tracking; // under _slotGate

    /// <summary>Creates a tracker for every memory slot of a VM: those declared now and those added later.</summary>
    /// <param name="port">The VM's dirty-log facility: <see cref="KvmVmPort"/> over a real VM, or the emulated VM of DirtyLog.Testing.</param>
    /// <param name="name">A name.</param>
    public KvmDirtyLogTracker(IKvmDirtyLogPort port, string name)
        : this(port, null, name)
    {
    }

    /// <summary>Creates a tracker for one memory slot of a VM (which may be removed and added again while tracking).</summary>
    /// <param name="port">The VM's dirty-log facility: <see cref="KvmVmPort"/> over a real VM, or the emulated VM of DirtyLog.Testing.</param>
    /// <param name="slotId">The slot, already declared.</param>
    /// <param name="name">A name; <c>kvm-log:slotN</c> by default.</param>
    /// <exception cref="ArgumentException">The slot does not exist.</exception>
    public KvmDirtyLogTracker(IKvmDirtyLogPort port, uint slotId, string? name = null)
        : this(port, (uint?)slotId, name ?? $"kvm-log:slot{slotId}")
    {
        if (!port.GetSlots().Any(s => s.Id == slotId))
        {
            _watch.Dispose();
            throw new ArgumentException($"Memory slot {slotId} does not exist.", nameof(slotId));
        }
    }

    private KvmDirtyLogTracker(IKvmDirtyLogPort port, uint? onlySlot, string name)
        : base(name, DirtyAddressSpace.GuestPhysical, 4096)
    {
        ArgumentNullException.ThrowIfNull(port);
        _port = port;
        _onlySlot = onlySlot;
        _watch = port.WatchSlots(new Watcher(this));
    }

    /// <summary>Whether the VM uses manual dirty-log protection.</summary>
    public bool ManualProtect => _port.ManualProtect;

    /// <inheritdoc/>
    /// <remarks>The slots tracked (or, when stopped, that would be), and removed slots whose pages are not read yet.</remarks>
    public override IReadOnlyList<AddressRange> Coverage
    {
        get
        {
            var ranges = _port.GetSlots().Where(Tracks).Select(s => new AddressRange(s.GuestAddress, s.Size)).ToList();
            lock (_slotGate)
            {
                ranges.AddRange(_removed.Select(r => new AddressRange(r.Slot.GuestAddress, r.Slot.Size)));
            }

            return [.. ranges.Distinct().OrderBy(r => r.Start)];
        }
    }

    /// <inheritdoc/>
    public override bool CanReadWithoutClear => ManualProtect;

    /// <inheritdoc/>
    public bool CanClearBeforeSend => ManualProtect;

    /// <inheritdoc/>
    /// <remarks>
    /// One <c>KVM_CLEAR_DIRTY_LOG</c> per slot the range touches, over the range widened to KVM's 64-page alignment
    /// with only the range's own pages set: pages outside it stay logged.
    /// </remarks>
    public void ClearBeforeSend(AddressRange range)
    {
        if (!ManualProtect || range.IsEmpty)
        {
            return;
        }

        Span<ulong> small = stackalloc ulong[64];
        lock (_slotGate)
        {
            if (!_tracking)
            {
                return;
            }

            foreach (SlotLog log in _logs.Values)
            {
                KvmMemorySlot slot = log.Slot;
                AddressRange part = range.Intersect(new AddressRange(slot.GuestAddress, slot.Size));
                if (part.IsEmpty)
                {
                    continue;
                }

                ulong first = (part.Start - slot.GuestAddress) / 4096, end = ((part.End - slot.GuestAddress) + 4095) / 4096;
                ulong alignedFirst = first & ~63UL;
                ulong alignedEnd = Math.Min(slot.Pages, (end + 63) & ~63UL); // a multiple of 64, or the slot's end
                int words = (int)((alignedEnd - alignedFirst + 63) / 64);
                Span<ulong> mask = words <= small.Length ? small[..words] : new ulong[words];
                mask.Clear();
                for (ulong page = first; page < end; page++)
                {
                    mask[(int)((page - alignedFirst) / 64)] |= 1UL << (int)((page - alignedFirst) % 64);
                }

                _port.ClearDirtyLog(slot.Id, alignedFirst, (uint)(alignedEnd - alignedFirst), mask);
            }
        }
    }

    /// <inheritdoc/>
    protected override void OnStart()
    {
        lock (_slotGate)
        {
            KvmMemorySlot[] slots = [.. _port.GetSlots().Where(Tracks)];
            int enabled = 0;
            try
            {
                for (; enabled < slots.Length; enabled++)
                {
                    _port.SetDirtyLogging(slots[enabled].Id, true);
                }
            }
            catch
            {
                // Not half-started: the slots already switched go back.
                for (int i = 0; i < enabled; i++)
                {
                    _port.SetDirtyLogging(slots[i].Id, false);
                }

                throw;
            }

            _logs.Clear();
            _removed.Clear();
            foreach (KvmMemorySlot slot in slots)
            {
                _logs.Add(slot.Id, new SlotLog(slot));
            }

            SlotsChangedLocked();

            _tracking = true;
        }
    }

    /// <inheritdoc/>
    protected override void OnStop()
    {
        lock (_slotGate)
        {
            _tracking = false;
            foreach (SlotLog log in _logs.Values.ToArray())
            {
                _port.SetDirtyLogging(log.Slot.Id, false);
                _logs.Remove(log.Slot.Id);
            }

            SlotsChangedLocked();

            _removed.Clear();
        }
    }

    /// <inheritdoc/>
    protected override ulong ReadCore(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode)
    {
        lock (_slotGate)
        {
            ulong count = 0;
            foreach (SlotLog log in _inOrder)
            {
                KvmMemorySlot slot = log.Slot;
                if (range.Intersect(new AddressRange(slot.GuestAddress, slot.Size)).IsEmpty)
                {
                    continue;
                }

                // GET overwrites every word of the slot's bitmap: no clearing needed.
                _port.GetDirtyLog(slot.Id, log.Bitmap);
                if (log.AllDirty)
                {
                    log.FillAll(); // added while tracking: never sent
                }

                // In manual mode the pages are handed over before CLEAR: CLEAR re-protects and flushes TLBs, after
                // which first touches of memory are dearer on nested hosts; and a hand-over that fails leaves the bits
                // in KVM for the next read. The caller reads page contents after this read returns, so after the
                // re-protection either way.
                count += Deliver(log.Bitmap, slot.Pages, slot.GuestAddress, sink);
                if (mode == DirtyReadMode.Clear)
                {
                    log.AllDirty = false;
                    if (ManualProtect)
                    {
                        _port.ClearDirtyLog(slot.Id, 0, (uint)slot.Pages, log.Bitmap);
                    }
                }
            }

            for (int i = 0; i < _removed.Count; i++)
            {
                SlotLog gone = _removed[i];
                if (!range.Intersect(new AddressRange(gone.Slot.GuestAddress, gone.Slot.Size)).IsEmpty)
                {
                    count += Deliver(gone.Bitmap, gone.Slot.Pages, gone.Slot.GuestAddress, sink);
                    if (mode == DirtyReadMode.Clear)
                    {
                        _removed.RemoveAt(i--);
                    }
                }
            }

            return count;
        }
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        _watch.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>Re-sorts the logs after the set of slots changed: reads walk an array, allocating nothing.</summary>
    private void SlotsChangedLocked()
    {
        System.Diagnostics.Debug.Assert(_slotGate.IsHeldByCurrentThread, "the logs are guarded by the slot lock");
        _inOrder = [.. _logs.Values.OrderBy(l => l.Slot.GuestAddress)];
    }

    private bool Tracks(KvmMemorySlot slot) => _onlySlot is not { } only || slot.Id == only;

    private void SlotAdded(KvmMemorySlot slot)
    {
        if (!Tracks(slot))
        {
            return;
        }

        lock (_slotGate)
        {
            if (!_tracking)
            {
                return;
            }

            // Reported whole by the next read even if logging it fails below: that read then faults on the slot, and
            // the harvester treats the tracker's coverage as dirty; nothing is lost either way.
            _logs[slot.Id] = new SlotLog(slot) { AllDirty = true };
            SlotsChangedLocked();
            _port.SetDirtyLogging(slot.Id, true);
        }
    }

    private void SlotRemoving(KvmMemorySlot slot)
    {
        lock (_slotGate)
        {
            if (!_tracking || !_logs.Remove(slot.Id, out SlotLog? log))
            {
                return;
            }

            SlotsChangedLocked();

            try
            {
                _port.GetDirtyLog(slot.Id, log.Bitmap);
                if (log.AllDirty)
                {
                    log.FillAll();
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                log.FillAll(); // its dirty state is out of reach: every page of it may be dirty
            }

            _removed.Add(log);
        }
    }

    /// <summary>One slot's log buffer and whether it must be reported whole.</summary>
    private sealed class SlotLog(KvmMemorySlot slot)
    {
        public KvmMemorySlot Slot { get; } = slot;

        public ulong[] Bitmap { get; } = new ulong[(slot.Pages + 63) / 64];

        public bool AllDirty { get; set; }

        public void FillAll()
        {
            Bitmap.AsSpan().Fill(~0UL);
            if ((Slot.Pages & 63) != 0)
            {
                Bitmap[^1] = (1UL << (int)(Slot.Pages & 63)) - 1;
            }
        }
    }

    /// <summary>The port's calls, kept off the tracker's public surface.</summary>
    private sealed class Watcher(KvmDirtyLogTracker owner) : IKvmSlotWatcher
    {
        public void OnSlotAdded(KvmMemorySlot slot) => owner.SlotAdded(slot);

        public void OnSlotRemoving(KvmMemorySlot slot) => owner.SlotRemoving(slot);
    }
}
