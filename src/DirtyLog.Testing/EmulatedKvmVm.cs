// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Numerics;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Testing;

/// <summary>
/// An emulated KVM VM for testing the KVM trackers without <c>/dev/kvm</c>: guest memory, memory slots, vCPUs that
/// write it, and either the per-slot dirty bitmap (classic or manual protect) or per-vCPU dirty rings, each with
/// KVM's documented rules (see <see cref="IKvmDirtyLogPort"/> and <see cref="IKvmDirtyRingPort"/>).
/// </summary>
/// <remarks>
/// <para>Rules kept: a slot lies inside guest memory, page-aligned, overlapping no other (<c>EEXIST</c>), and cannot be
/// moved or resized in place (<c>EINVAL</c>: delete it and create it again); starting to log a slot write-protects its
/// pages and starts an empty bitmap; <c>KVM_GET_DIRTY_LOG</c> fails with <c>ENOENT</c> on a slot that is not logging
/// and with <c>ENXIO</c> on a ring VM; classic GET takes the bits, manual GET copies them; <c>KVM_CLEAR_DIRTY_LOG</c>
/// needs a first page that is a multiple of 64 and a multiple of 64 pages unless it ends at the slot's end
/// (<c>EINVAL</c>); in ring mode a page is pushed once until the reset of its entry re-protects it, entries carry
/// <c>as_id &lt;&lt; 16 | slot</c> and the page offset in the slot, and a vCPU whose ring holds its soft limit (entries
/// minus 64 reserved and a 512-entry PML batch) exits before writing again.</para>
/// <para>Thread safety: every member may be called from any thread; one lock serialises them (an emulator needs no
/// more), so vCPU threads, a reaper and readers may run at once.</para>
/// </remarks>
public sealed class EmulatedKvmVm : IKvmDirtyLogPort, IKvmDirtyRingPort, IDisposable
{
    /// <summary>Entries below a ring's size at which KVM reports it full: <c>KVM_DIRTY_RING_RSVD_ENTRIES</c> (64) plus x86's PML batch (512).</summary>
    public const uint ReservedRingEntries = 64 + 512;

    private readonly Lock _gate = new();
    private readonly Dictionary<uint, SlotState> _slots = new();
    private readonly KvmSlotWatchers _watchers = new();
    private readonly EmulatedKvmVcpu[] _vcpus;
    private long _slotTableVersion;

    /// <summary>Creates a VM with zeroed guest memory and vCPUs.</summary>
    /// <param name="memoryBytes">Guest memory, a multiple of 4096; slots are carved out of it at their guest-physical address.</param>
    /// <param name="vcpus">vCPUs, each with a ring in ring mode.</param>
    /// <param name="manualProtect">Whether <c>KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2</c> is on (bitmap mode).</param>
    /// <param name="ringEntries">Entries per vCPU ring (a power of two from 1024 to 65536); 0 for the dirty bitmap.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is out of range.</exception>
    public EmulatedKvmVm(ulong memoryBytes, int vcpus = 1, bool manualProtect = false, uint ringEntries = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vcpus, 1);
        if (ringEntries != 0 && (ringEntries < 1024 || ringEntries > 65536 || !BitOperations.IsPow2(ringEntries)))
        {
            throw new ArgumentOutOfRangeException(nameof(ringEntries), ringEntries, "A ring has a power of two of entries, from 1024 to 65536 (0: no ring).");
        }

        Memory = new EmulatedGuestMemory(memoryBytes);
        ManualProtect = manualProtect;
        RingEntries = ringEntries;
        _vcpus = Enumerable.Range(0, vcpus).Select(i => new EmulatedKvmVcpu(this, i, ringEntries)).ToArray();
    }

    /// <summary>The guest's memory: guest-physical address = offset.</summary>
    public EmulatedGuestMemory Memory { get; }

    /// <summary>The vCPUs.</summary>
    public IReadOnlyList<EmulatedKvmVcpu> Vcpus => _vcpus;

    /// <inheritdoc/>
    public string Name => "emulated-kvm-vm";

    /// <inheritdoc/>
    public bool ManualProtect { get; }

    /// <inheritdoc/>
    public uint RingEntries { get; }

    /// <inheritdoc/>
    public int RingCount => RingEntries == 0 ? 0 : _vcpus.Length;

    /// <summary>The soft limit: a ring holding this many entries makes its vCPU exit.</summary>
    public uint RingSoftLimit => RingEntries - ReservedRingEntries;

    /// <inheritdoc/>
    public long SlotTableVersion
    {
        get
        {
            lock (_gate)
            {
                return _slotTableVersion;
            }
        }
    }

    /// <summary><c>KVM_SET_USER_MEMORY_REGION</c> for a new slot (dirty logging off); watchers (trackers) are told after.</summary>
    /// <param name="id">The slot id.</param>
    /// <param name="guestAddress">The first guest-physical byte, page-aligned.</param>
    /// <param name="size">Bytes, a non-zero multiple of 4096, inside guest memory.</param>
    /// <exception cref="KernelException"><c>EINVAL</c> (unaligned, outside memory, or an existing slot moved or resized), <c>EEXIST</c> (overlap).</exception>
    public void AddSlot(uint id, ulong guestAddress, ulong size)
    {
        KvmMemorySlot added;
        lock (_gate)
        {
            if (size == 0 || ((guestAddress | size) & 4095) != 0 || !Memory.Contains(guestAddress, size) || id > ushort.MaxValue)
            {
                throw Error("KVM_SET_USER_MEMORY_REGION", Errno.EINVAL);
            }

            if (_slots.TryGetValue(id, out SlotState? existing))
            {
                throw Error("KVM_SET_USER_MEMORY_REGION", existing.Slot.GuestAddress == guestAddress && existing.Slot.Size == size ? Errno.EEXIST : Errno.EINVAL);
            }

            if (_slots.Values.Any(s => guestAddress < s.Slot.GuestAddress + s.Slot.Size && s.Slot.GuestAddress < guestAddress + size))
            {
                throw Error("KVM_SET_USER_MEMORY_REGION", Errno.EEXIST);
            }

            added = new KvmMemorySlot(id, guestAddress, size, (ulong)Memory.AsView().Address + guestAddress, false);
            _slots.Add(id, new SlotState(added));
            _slotTableVersion++;
        }

        _watchers.SlotAdded(added);
    }

    /// <summary><c>KVM_SET_USER_MEMORY_REGION</c> with size 0: deletes a slot (its bitmap goes; ring entries naming it stay in the rings).</summary>
    /// <param name="id">The slot id.</param>
    /// <exception cref="KernelException"><c>EINVAL</c>: no such slot.</exception>
    /// <remarks>Watchers (trackers) are told first, while the slot and its dirty state still exist, as a VMM tells its port.</remarks>
    public void DeleteSlot(uint id)
    {
        KvmMemorySlot slot;
        lock (_gate)
        {
            slot = _slots.TryGetValue(id, out SlotState? state) ? state.Slot : throw Error("KVM_SET_USER_MEMORY_REGION", Errno.EINVAL);
        }

        _watchers.SlotRemoving(slot);
        lock (_gate)
        {
            _slots.Remove(id);
            _slotTableVersion++;
        }
    }

    /// <inheritdoc/>
    public IDisposable WatchSlots(IKvmSlotWatcher watcher) => _watchers.Add(watcher);

    /// <inheritdoc/>
    public IReadOnlyList<KvmMemorySlot> GetSlots()
    {
        lock (_gate)
        {
            return _slots.Values.Select(s => s.Slot).ToArray();
        }
    }

    /// <inheritdoc/>
    public void SetDirtyLogging(uint slotId, bool enable)
    {
        lock (_gate)
        {
            SlotState state = Slot(slotId, "KVM_SET_USER_MEMORY_REGION", Errno.EINVAL);
            if (state.Slot.LogDirtyPages != enable)
            {
                state.Slot = state.Slot with { LogDirtyPages = enable };
                state.Dirty = enable && RingEntries == 0 ? new ulong[(state.Slot.Pages + 63) / 64] : null;
                Array.Clear(state.Writable); // every page write-protected again
            }

            _slotTableVersion++;
        }
    }

    /// <inheritdoc/>
    public void GetDirtyLog(uint slotId, Span<ulong> bitmap)
    {
        lock (_gate)
        {
            if (RingEntries != 0)
            {
                throw Error("KVM_GET_DIRTY_LOG", Errno.ENXIO);
            }

            SlotState state = Slot(slotId, "KVM_GET_DIRTY_LOG", Errno.ENOENT);
            ulong[] dirty = state.Dirty ?? throw Error("KVM_GET_DIRTY_LOG", Errno.ENOENT);
            if (bitmap.Length < dirty.Length)
            {
                throw Error("KVM_GET_DIRTY_LOG", Errno.EFAULT);
            }

            dirty.CopyTo(bitmap);
            if (!ManualProtect)
            {
                Array.Clear(dirty); // classic: fetched and re-protected in one call
            }
        }
    }

    /// <inheritdoc/>
    public void ClearDirtyLog(uint slotId, ulong firstPage, uint pageCount, ReadOnlySpan<ulong> bitmap)
    {
        lock (_gate)
        {
            SlotState state = Slot(slotId, "KVM_CLEAR_DIRTY_LOG", Errno.EINVAL);
            ulong pages = state.Slot.Pages;
            if ((firstPage & 63) != 0 || firstPage >= pages || pageCount > pages - firstPage
                || (pageCount < pages - firstPage && (pageCount & 63) != 0) || (ulong)bitmap.Length * 64 < pageCount)
            {
                throw Error("KVM_CLEAR_DIRTY_LOG", Errno.EINVAL);
            }

            ulong[] dirty = state.Dirty ?? throw Error("KVM_CLEAR_DIRTY_LOG", Errno.ENOENT);
            for (uint i = 0; i < pageCount; i++)
            {
                if ((bitmap[(int)(i / 64)] & (1UL << (int)(i % 64))) != 0)
                {
                    ulong page = firstPage + i;
                    dirty[page / 64] &= ~(1UL << (int)(page % 64));
                }
            }
        }
    }

    /// <inheritdoc/>
    public int HarvestRing<TVisitor>(int ring, ref TVisitor visitor)
        where TVisitor : struct, IDirtyRingVisitor
    {
        lock (_gate)
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)ring, (uint)RingCount, nameof(ring));
            return _vcpus[ring].Ring!.Cursor.Harvest(ref visitor);
        }
    }

    /// <inheritdoc/>
    public int SkipRecycledEntries(int ring)
    {
        lock (_gate)
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)ring, (uint)RingCount, nameof(ring));
            return _vcpus[ring].Ring!.Cursor.SkipRecycled();
        }
    }

    /// <inheritdoc/>
    public int ResetDirtyRings()
    {
        lock (_gate)
        {
            int count = 0;
            foreach (EmulatedKvmVcpu vcpu in _vcpus)
            {
                count += vcpu.Ring?.ResetHarvested(Reprotect) ?? 0;
            }

            return count;
        }
    }

    /// <summary>Frees the guest memory.</summary>
    public void Dispose() => Memory.Dispose();

    internal EmulatedVcpuExit RunVcpu(EmulatedKvmVcpu vcpu, ReadOnlySpan<ulong> guestAddresses, ulong value, out int written)
    {
        written = 0;
        bool overshoot = vcpu.OvershootNextRun;
        vcpu.OvershootNextRun = false;
        foreach (ulong address in guestAddresses)
        {
            lock (_gate)
            {

                SlotState slot = _slots.Values.FirstOrDefault(s => address - s.Slot.GuestAddress < s.Slot.Size)
                    ?? throw new ArgumentException($"Guest address 0x{address:x} is in no memory slot.", nameof(guestAddresses));
                ulong page = (address - slot.Slot.GuestAddress) / 4096;
                EmulatedDirtyRing? ring = vcpu.Ring;
                bool pushes = ring is not null && slot.Slot.LogDirtyPages && !slot.IsWritable(page);
                if (pushes && !overshoot && ring!.Used >= RingSoftLimit)
                {
                    return EmulatedVcpuExit.DirtyRingFull; // checked before entering the guest again
                }

                Memory.WriteUInt64(address & ~7UL, value);
                if (pushes)
                {
                    // Past a full ring KVM warns and pushes anyway, over the oldest entry: the measured host defect
                    // (the soft limit not honoured within one run) loses those entries and puts the ring out of step.
                    if (ring!.Push(slot.Slot.Id, page))
                    {
                        vcpu.LostEntries++;
                    }

                    slot.SetWritable(page);
                    vcpu.HasOvershot |= ring.Used > RingSoftLimit;
                }
                else if (slot.Dirty is { } dirty)
                {
                    dirty[page / 64] |= 1UL << (int)(page % 64);
                }
            }

            written++;
        }

        return EmulatedVcpuExit.Completed;
    }

    private void Reprotect(uint slotField, ulong offset)
    {
        if (slotField >> 16 == 0 && _slots.TryGetValue(slotField, out SlotState? slot) && offset < slot.Slot.Pages)
        {
            slot.ClearWritable(offset);
        }
    }

    private SlotState Slot(uint slotId, string request, Errno errno) =>
        _slots.TryGetValue(slotId, out SlotState? state) ? state : throw Error(request, errno);

    private static KernelException Error(string request, Errno errno) => new("ioctl", $"{request} on the emulated KVM VM", errno);

    /// <summary>One slot: its registration, its dirty bitmap while logging (bitmap mode), and which pages are writable (not write-protected).</summary>
    private sealed class SlotState(KvmMemorySlot slot)
    {
        public KvmMemorySlot Slot { get; set; } = slot;

        public ulong[]? Dirty { get; set; }

        public ulong[] Writable { get; } = new ulong[(slot.Pages + 63) / 64];

        public bool IsWritable(ulong page) => (Writable[page / 64] & (1UL << (int)(page % 64))) != 0;

        public void SetWritable(ulong page) => Writable[page / 64] |= 1UL << (int)(page % 64);

        public void ClearWritable(ulong page) => Writable[page / 64] &= ~(1UL << (int)(page % 64));
    }
}
