// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Native.Internal;
using DirtyLog.Native.Linux.Kvm;
using static DirtyLog.Native.Linux.Kvm.KvmConstants;

namespace DirtyLog.Testing;

/// <summary>
/// A vCPU's dirty ring as KVM keeps it (<c>virt/kvm/dirty_ring.c</c>): <c>kvm_dirty_gfn</c> entries pushed at the
/// dirty index, handed back by the harvester (flag RESET), recycled by the VM-wide reset from the reset index. User
/// space's side is <see cref="DirtyRingCursor"/>, the same code that harvests a real ring. Guarded by the owning VM's lock.
/// </summary>
/// <remarks>
/// As in the kernel, a push onto a full ring is not refused: the kernel warns once and overwrites the entry at the
/// dirty index, which still advances; the reset walks from the reset index over every entry handed back, whatever the
/// dirty index says. A ring pushed past a lap therefore falls out of step exactly as a real one does.
/// </remarks>
internal sealed unsafe class EmulatedDirtyRing
{
    private readonly kvm_dirty_gfn[] _entries; // pinned: the cursor walks it by pointer, as it walks a mapped ring
    private readonly kvm_dirty_gfn* _base;
    private uint _dirtyIndex;  // next push
    private uint _resetIndex;  // next entry the reset recycles

    public EmulatedDirtyRing(uint entries)
    {
        _entries = GC.AllocateArray<kvm_dirty_gfn>((int)entries, pinned: true);
        fixed (kvm_dirty_gfn* first = _entries)
        {
            _base = first; // the array is pinned for its lifetime
        }

        Cursor = new DirtyRingCursor(_base, entries);
    }

    public uint Entries => (uint)_entries.Length;

    /// <summary>User space's side: the harvest and the way back in step after an overflow.</summary>
    public DirtyRingCursor Cursor { get; }

    /// <summary>Entries pushed and not yet recycled by a reset, as KVM counts them (<c>kvm_dirty_ring_used</c>).</summary>
    public uint Used => _dirtyIndex - _resetIndex;

    public bool IsFull => Used >= Entries;

    /// <summary><c>kvm_dirty_ring_push</c>.</summary>
    /// <returns>Whether the push overwrote an entry not yet harvested (its page is then lost to the ring).</returns>
    public bool Push(uint slot, ulong offset)
    {
        ref kvm_dirty_gfn entry = ref _entries[_dirtyIndex & (Entries - 1)];
        bool lost = (entry.flags & KVM_DIRTY_GFN_F_DIRTY) != 0;
        entry.slot = slot;
        entry.offset = offset;
        System.Threading.Volatile.Write(ref entry.flags, KVM_DIRTY_GFN_F_DIRTY); // smp_wmb, then the flags
        _dirtyIndex++;
        return lost;
    }

    /// <summary><c>kvm_dirty_ring_reset</c>: recycles the harvested entries from the reset index on, handing each to <paramref name="reprotect"/>.</summary>
    public int ResetHarvested(Action<uint, ulong> reprotect)
    {
        int count = 0;
        while (count < int.MaxValue)
        {
            ref kvm_dirty_gfn entry = ref _entries[_resetIndex & (Entries - 1)];
            if ((entry.flags & KVM_DIRTY_GFN_F_RESET) == 0)
            {
                break;
            }

            reprotect(entry.slot, entry.offset);
            entry.flags = 0;
            _resetIndex++;
            count++;
        }

        return count;
    }
}
