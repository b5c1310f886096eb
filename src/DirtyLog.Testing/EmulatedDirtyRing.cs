// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Testing;

/// <summary>
/// A vCPU's dirty ring as KVM keeps it: entries pushed at the dirty index, handed back by the harvester (flag RESET),
/// recycled by the VM-wide reset from the reset index. Guarded by the owning VM's lock.
/// </summary>
internal sealed class EmulatedDirtyRing
{
    public const int Free = 0, Dirty = 1, Reset = 2;

    private readonly (uint Slot, ulong Offset, int Flags)[] _entries;
    private uint _dirtyIndex;  // next push
    private uint _resetIndex;  // next entry the reset recycles
    private uint _fetchIndex;  // next entry the harvester reads (user space's own index)

    public EmulatedDirtyRing(uint entries) => _entries = new (uint, ulong, int)[entries];

    public uint Entries => (uint)_entries.Length;

    /// <summary>Entries pushed and not yet recycled by a reset.</summary>
    public uint Used => _dirtyIndex - _resetIndex;

    public bool IsFull => Used == Entries;

    public void Push(uint slot, ulong offset)
    {
        _entries[_dirtyIndex & (Entries - 1)] = (slot, offset, Dirty);
        _dirtyIndex++;
    }

    public int Harvest<TVisitor>(ref TVisitor visitor)
        where TVisitor : struct, DirtyLog.Native.IDirtyRingVisitor
    {
        int count = 0;
        while (count < Entries)
        {
            ref (uint Slot, ulong Offset, int Flags) entry = ref _entries[_fetchIndex & (Entries - 1)];
            if (entry.Flags != Dirty)
            {
                break;
            }

            visitor.Visit(entry.Slot, entry.Offset);
            entry.Flags = Reset;
            _fetchIndex++;
            count++;
        }

        return count;
    }

    /// <summary>Recycles the harvested entries from the reset index on, handing each to <paramref name="reprotect"/>.</summary>
    public int ResetHarvested(System.Action<uint, ulong> reprotect)
    {
        int count = 0;
        while (_resetIndex != _dirtyIndex)
        {
            ref (uint Slot, ulong Offset, int Flags) entry = ref _entries[_resetIndex & (Entries - 1)];
            if (entry.Flags != Reset)
            {
                break;
            }

            reprotect(entry.Slot, entry.Offset);
            entry.Flags = Free;
            _resetIndex++;
            count++;
        }

        return count;
    }
}
