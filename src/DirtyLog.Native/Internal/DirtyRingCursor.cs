// Licensed under the MIT License. See LICENSE in the repository root.

using System.Threading;
using DirtyLog.Native.Linux.Kvm;
using static DirtyLog.Native.Linux.Kvm.KvmConstants;

namespace DirtyLog.Native.Internal;

/// <summary>
/// User space's side of one KVM dirty ring: the fetch index (KVM exports none), the harvest in ring order, and the
/// way back in step after the ring overflowed. Shared by the real ring (<see cref="KvmDirtyRing"/>) and the emulated
/// one, so that the emulator runs the same code against the kernel's rules.
/// </summary>
/// <remarks>
/// <para><b>Why a ring can fall out of step.</b> <c>kvm_dirty_ring_push</c> warns when the ring is full but pushes
/// anyway: the entry at <c>dirty_index</c> is overwritten and <c>dirty_index</c> still advances. A vCPU that pushes a
/// lap and k entries more (hosts that do not honour the soft limit within one <c>KVM_RUN</c>) leaves k kernel indices
/// past the lap whose entries we harvest at their positions, and which <c>KVM_RESET_DIRTY_RINGS</c> then recycles
/// (flags 0) as if they were the older entries they overwrote. KVM now counts those k entries as pushed and not reset,
/// while their flags say recycled: its reset index stops at them, our fetch index stops at them, and KVM pushes the
/// next entries k positions further on. Nothing is harvested again, the ring's use only grows, and at the soft limit
/// every <c>KVM_RUN</c> returns <c>KVM_EXIT_DIRTY_RING_FULL</c>: the wedge measured on nested hosts.</para>
/// <para><b>The way back.</b> <see cref="SkipRecycled"/> looks past a run of recycled entries at the fetch index for
/// the first dirty one. KVM pushes in order and publishes each entry's flags with a release store, so once that entry
/// is seen dirty (acquire) every entry pushed before it is visible: entries of the run still recycled on a second look
/// were never pushed this lap. They are KVM's k lost indices; marking them for reset lets the next reset walk over
/// them to the live entries, and the fetch index moves to the first live entry.</para>
/// <para>Thread safety: one harvester at a time (the owner serialises); the vCPU may push concurrently.</para>
/// </remarks>
internal sealed unsafe class DirtyRingCursor
{
    private readonly kvm_dirty_gfn* _entries;
    private readonly uint _mask;
    private uint _fetch;
    private bool _resetToCheck; // entries were harvested since the last check that KVM reset them
    private int _failedChecks;  // checks in a row that found the last harvested entry not reset

    /// <summary>A cursor over a ring's entries.</summary>
    /// <param name="entries">The ring: a power of two of entries, mapped or emulated, valid while the cursor is used.</param>
    /// <param name="size">Entries in the ring.</param>
    public DirtyRingCursor(kvm_dirty_gfn* entries, uint size)
    {
        _entries = entries;
        Size = size;
        _mask = size - 1;
    }

    /// <summary>Entries in the ring.</summary>
    public uint Size { get; }

    /// <summary>The fetch index: the next entry to harvest (free running).</summary>
    public uint Fetch => _fetch;

    /// <summary>Entries skipped so far by <see cref="SkipRecycled"/>: kernel indices lost to overflows.</summary>
    public long Skipped { get; private set; }

    /// <summary>Harvests every dirty entry from the fetch index on, in order, marking each for reset.</summary>
    /// <typeparam name="TVisitor">The visitor's type.</typeparam>
    /// <param name="visitor">Receives (slot, offset) per entry.</param>
    /// <returns>The entries harvested: at most one lap.</returns>
    public int Harvest<TVisitor>(ref TVisitor visitor)
        where TVisitor : struct, IDirtyRingVisitor
    {
        uint fetch = _fetch;
        int count = 0;
        while (count < Size)
        {
            kvm_dirty_gfn* entry = _entries + (fetch & _mask);

            // Acquire: the entry's slot and offset are read after KVM's release store of its flags.
            if ((Volatile.Read(ref entry->flags) & KVM_DIRTY_GFN_F_DIRTY) == 0)
            {
                break;
            }

            visitor.Visit(entry->slot, entry->offset);

            // Release: KVM sees the entry handed back only after it was read.
            Volatile.Write(ref entry->flags, KVM_DIRTY_GFN_F_RESET);
            fetch++;
            count++;
        }

        _fetch = fetch;
        _resetToCheck |= count != 0;
        return count;
    }

    /// <summary>
    /// After an overflow: skips the entries at the fetch index that KVM counts as pushed but that were recycled,
    /// marking them for reset, so that the next harvest and reset reach the live entries behind them.
    /// </summary>
    /// <returns>The entries skipped; 0 when the ring is in step (or no live entry shows yet).</returns>
    public int SkipRecycled()
    {
        uint fetch = _fetch;
        if (Volatile.Read(ref At(fetch)->flags) != 0)
        {
            return 0; // dirty (harvest it) or handed back and not yet reset: in step
        }

        uint gap = 1;
        for (; gap < Size; gap++)
        {
            uint flags = Volatile.Read(ref At(fetch + gap)->flags);
            if ((flags & KVM_DIRTY_GFN_F_DIRTY) != 0)
            {
                break;
            }

            if (flags != 0)
            {
                return 0; // an entry handed back and not reset: this is not the shape of an overflow
            }
        }

        if (gap == Size)
        {
            return 0; // every entry recycled: nothing pushed since, or nothing lost
        }

        // Second look: an entry of the run pushed between the two reads is dirty now (the dirty one found was
        // pushed after it), so only the prefix still recycled is KVM's lost indices.
        uint skipped = 0;
        while (skipped < gap && Volatile.Read(ref At(fetch + skipped)->flags) == 0)
        {
            skipped++;
        }

        for (uint i = 0; i < skipped; i++)
        {
            Volatile.Write(ref At(fetch + i)->flags, KVM_DIRTY_GFN_F_RESET);
        }

        _fetch = fetch + skipped;
        _resetToCheck |= skipped != 0;
        Skipped += skipped;
        return (int)skipped;
    }

    /// <summary>
    /// After <c>KVM_RESET_DIRTY_RINGS</c>: whether KVM collected what was harvested since the last check. A ring whose
    /// harvested entries keep their reset flag reset after reset is not one of that VM's rings.
    /// </summary>
    /// <returns><see langword="false"/> when two resets in a row left the last harvested entry uncollected.</returns>
    public bool CheckHarvestedEntriesWereReset()
    {
        if (!_resetToCheck)
        {
            return true;
        }

        // After an overflow the reset can stop behind the fetch index, at an entry the vCPU pushed over one already
        // handed back; the next harvest reaches that entry and the reset after it moves on. A foreign ring is never
        // collected, so one failed check says nothing and two in a row say it all.
        kvm_dirty_gfn* last = At(_fetch - 1);
        if ((Volatile.Read(ref last->flags) & KVM_DIRTY_GFN_F_RESET) != 0)
        {
            return ++_failedChecks < 2;
        }

        _failedChecks = 0;
        _resetToCheck = false;
        return true;
    }

    private kvm_dirty_gfn* At(uint index) => _entries + (index & _mask);
}
