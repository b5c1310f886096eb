// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Runtime.Versioning;
using DirtyLog.Native;

namespace DirtyLog.Tracking.Ports;

/// <summary>
/// The real <see cref="IKvmDirtyLogPort"/> and <see cref="IKvmDirtyRingPort"/>: a KVM VM, the dirty rings of its
/// vCPUs, and the table of its memory slots as the VMM declares them.
/// </summary>
/// <remarks>
/// <para><b>The VMM owns its memslots.</b> It creates, moves and deletes them with its own
/// <c>KVM_SET_USER_MEMORY_REGION</c>, and tells the port: <see cref="AddSlot"/> after creating one,
/// <see cref="RemoveSlot"/> before deleting one (trackers harvest it first, so nothing written to it is lost). A slot
/// moved or resized is a removal and an addition, as in KVM. A slot added while tracking is reported entirely dirty.
/// Who sets <c>KVM_MEM_LOG_DIRTY_PAGES</c> is <see cref="Logging"/>'s choice. A VM whose slots DirtyLog's own
/// <see cref="KvmVm.SetMemorySlot"/> created starts with those slots declared.</para>
/// <para>Owns neither the VM nor the rings. Thread safety: every member may be called from any thread; slot changes
/// are told to trackers one at a time. Lock order: a tracker's locks, then the slot watchers' (<see cref="KvmSlotWatchers"/>),
/// then a tracker's slot or ring lock, then this port's table lock, which is held only to copy or change the table.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed class KvmVmPort : IKvmDirtyLogPort, IKvmDirtyRingPort
{
    private readonly KvmVm _vm;
    private readonly KvmDirtyRing[] _rings;
    private readonly Lock _table = new();
    private readonly Dictionary<uint, KvmMemorySlot> _slots = new(); // under _table
    private readonly KvmSlotWatchers _watchers = new();
    private long _version;

    /// <summary>Creates the port of a VM, with the rings of its vCPUs when it runs in ring mode.</summary>
    /// <param name="vm">The VM: one DirtyLog created, or one the VMM created (<see cref="KvmVm.FromHandle"/>).</param>
    /// <param name="rings">The vCPUs' rings (ring mode; <see cref="KvmDirtyRing.Map"/> for vCPUs the VMM created); none for the dirty bitmap.</param>
    /// <param name="logging">Who sets <c>KVM_MEM_LOG_DIRTY_PAGES</c>.</param>
    /// <exception cref="ArgumentException">Rings are given but the VM has no dirty ring, or a ring's size is not the VM's.</exception>
    public KvmVmPort(KvmVm vm, IEnumerable<KvmDirtyRing>? rings = null, DirtyLoggingControl logging = DirtyLoggingControl.ByDirtyLog)
    {
        ArgumentNullException.ThrowIfNull(vm);
        if (!Enum.IsDefined(logging))
        {
            throw new ArgumentOutOfRangeException(nameof(logging), logging, "Unknown logging mode.");
        }

        _vm = vm;
        _rings = rings?.ToArray() ?? [];
        Logging = logging;
        if (_rings.Length != 0 && vm.DirtyRingEntries == 0)
        {
            throw new ArgumentException("The VM has no dirty ring: enable it before creating vCPUs.", nameof(rings));
        }

        if (_rings.FirstOrDefault(r => r.Entries != vm.DirtyRingEntries) is { } odd)
        {
            throw new ArgumentException($"A ring has {odd.Entries} entries; the VM's have {vm.DirtyRingEntries}.", nameof(rings));
        }

        foreach (KvmMemorySlot slot in vm.GetSlots())
        {
            _slots.Add(slot.Id, slot);
        }
    }

    /// <summary>Who sets <c>KVM_MEM_LOG_DIRTY_PAGES</c>.</summary>
    public DirtyLoggingControl Logging { get; }

    /// <inheritdoc/>
    public string Name => _vm.Handle.Path;

    /// <inheritdoc/>
    public long SlotTableVersion => Interlocked.Read(ref _version);

    /// <inheritdoc/>
    public bool ManualProtect => _vm.ManualDirtyLogProtect;

    /// <inheritdoc/>
    public uint RingEntries => _vm.DirtyRingEntries;

    /// <inheritdoc/>
    public int RingCount => _rings.Length;

    /// <summary>
    /// Declares a slot the VMM created with its own <c>KVM_SET_USER_MEMORY_REGION</c>. Trackers that are tracking start
    /// logging it (per <see cref="Logging"/>) and report it entirely dirty.
    /// </summary>
    /// <param name="slot">The slot as the VMM set it (with <see cref="KvmMemorySlot.LogDirtyPages"/> as set, under <see cref="DirtyLoggingControl.ByVmm"/>).</param>
    /// <exception cref="ArgumentException">
    /// The id is declared already, the slot overlaps another in guest-physical space, its size or address is not
    /// 4 KiB aligned, or it is empty.
    /// </exception>
    public void AddSlot(KvmMemorySlot slot)
    {
        ArgumentNullException.ThrowIfNull(slot);
        if (slot.Size == 0 || ((slot.GuestAddress | slot.Size | slot.HostAddress) & 4095) != 0 || slot.GuestAddress + slot.Size < slot.GuestAddress)
        {
            throw new ArgumentException($"Slot {slot.Id} ({slot.Size} bytes at 0x{slot.GuestAddress:x}) is empty, unaligned or wraps.", nameof(slot));
        }

        lock (_table)
        {
            if (_slots.ContainsKey(slot.Id))
            {
                throw new ArgumentException($"Slot {slot.Id} is declared already: remove it first (a move is a removal and an addition).", nameof(slot));
            }

            if (_slots.Values.FirstOrDefault(s => slot.GuestAddress < s.GuestAddress + s.Size && s.GuestAddress < slot.GuestAddress + slot.Size) is { } other)
            {
                throw new ArgumentException($"Slot {slot.Id} overlaps slot {other.Id} in guest-physical space.", nameof(slot));
            }

            _slots.Add(slot.Id, slot);
            Interlocked.Increment(ref _version);
        }

        _watchers.SlotAdded(slot);
    }

    /// <summary>
    /// Forgets a slot the VMM is about to delete: call it <i>before</i> deleting the slot in KVM, so that trackers
    /// harvest it while KVM still has its dirty state. Nothing written to it before this call is lost.
    /// </summary>
    /// <param name="slotId">The slot.</param>
    /// <exception cref="ArgumentException">No such slot is declared.</exception>
    public void RemoveSlot(uint slotId)
    {
        KvmMemorySlot slot = GetSlot(slotId);
        _watchers.SlotRemoving(slot);
        lock (_table)
        {
            _slots.Remove(slotId);
            Interlocked.Increment(ref _version);
        }
    }

    /// <inheritdoc/>
    public IReadOnlyList<KvmMemorySlot> GetSlots()
    {
        lock (_table)
        {
            return [.. _slots.Values];
        }
    }

    /// <inheritdoc/>
    public IDisposable WatchSlots(IKvmSlotWatcher watcher) => _watchers.Add(watcher);

    /// <inheritdoc/>
    /// <exception cref="InvalidOperationException">
    /// Under <see cref="DirtyLoggingControl.ByVmm"/>, logging is asked of a slot the VMM declared without it.
    /// </exception>
    public void SetDirtyLogging(uint slotId, bool enable)
    {
        KvmMemorySlot slot = GetSlot(slotId);
        if (Logging == DirtyLoggingControl.ByVmm)
        {
            if (enable && !slot.LogDirtyPages)
            {
                throw new InvalidOperationException(
                    $"Slot {slotId} was declared without KVM_MEM_LOG_DIRTY_PAGES, and the VMM sets that flag: set it, then declare the slot again.");
            }

            return;
        }

        KvmMemorySlot changed = slot with { LogDirtyPages = enable };
        _vm.SetMemorySlot(changed);
        lock (_table)
        {
            if (_slots.ContainsKey(slotId))
            {
                _slots[slotId] = changed;
            }
        }
    }

    /// <inheritdoc/>
    public void GetDirtyLog(uint slotId, Span<ulong> bitmap) => _vm.GetDirtyLog(GetSlot(slotId), bitmap);

    /// <inheritdoc/>
    public void ClearDirtyLog(uint slotId, ulong firstPage, uint pageCount, ReadOnlySpan<ulong> bitmap) =>
        _vm.ClearDirtyLog(slotId, firstPage, pageCount, bitmap);

    /// <inheritdoc/>
    public int HarvestRing<TVisitor>(int ring, ref TVisitor visitor)
        where TVisitor : struct, IDirtyRingVisitor => _rings[ring].Harvest(ref visitor);

    /// <inheritdoc/>
    public int SkipRecycledEntries(int ring) => _rings[ring].SkipRecycledEntries();

    /// <inheritdoc/>
    /// <exception cref="InvalidOperationException">
    /// A ring's harvested entries were not collected by the VM's reset: that ring is a vCPU of another VM.
    /// </exception>
    public int ResetDirtyRings()
    {
        int reset = _vm.ResetDirtyRings();
        for (int i = 0; i < _rings.Length; i++)
        {
            if (!_rings[i].CheckHarvestedEntriesWereReset())
            {
                throw new InvalidOperationException(
                    $"Ring {i} was not reset by two KVM_RESET_DIRTY_RINGS in a row on {_vm.Handle.Path}: it is the ring of a vCPU of another VM.");
            }
        }

        return reset;
    }

    private KvmMemorySlot GetSlot(uint slotId)
    {
        lock (_table)
        {
            return _slots.TryGetValue(slotId, out KvmMemorySlot? slot) ? slot : throw new ArgumentException($"Memory slot {slotId} is not declared.", nameof(slotId));
        }
    }
}
