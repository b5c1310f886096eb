// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using DirtyLog.Native;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Tracking;

/// <summary>
/// Decodes dirty-ring entries, <c>(as_id &lt;&lt; 16 | slot, offset)</c>, through the VM's slot table into pending pages
/// per slot, and keeps them until they are taken. It owns the decoding state: the slot table as last read (re-read only
/// when its version changes), the pending pages of every slot (kept across moves and resizes until read), and the
/// entries it could not place.
/// </summary>
/// <remarks>Not thread-safe: its owner (<see cref="KvmDirtyRingTracker"/>) uses it under its ring lock only.</remarks>
internal sealed class RingEntryDecoder
{
    private readonly Dictionary<(uint Id, ulong FirstPage, ulong Pages), PendingPages> _pending = new();
    private Dictionary<uint, PendingPages> _bySlotId = new(); // the current slots
    private long _slotTableVersion = -1;
    private uint _lastSlotField = uint.MaxValue;
    private PendingPages? _lastPending;
    private bool _unknownSinceTaken;

    /// <summary>Entries whose slot the table did not know, or whose offset was past its slot, so far.</summary>
    public long UnknownEntries { get; private set; }

    /// <summary>Re-reads the slot table if it changed: entries decode through the table as it is now.</summary>
    public void Refresh(IKvmSlotPort port)
    {
        long version = port.SlotTableVersion;
        if (version == _slotTableVersion)
        {
            return;
        }

        var bySlotId = new Dictionary<uint, PendingPages>();
        foreach (KvmMemorySlot slot in port.GetSlots())
        {
            var key = (slot.Id, slot.GuestAddress / 4096, slot.Pages);
            if (!_pending.TryGetValue(key, out PendingPages? pending))
            {
                pending = new PendingPages(key.Item2, key.Item3);
                _pending.Add(key, pending);
            }

            bySlotId.Add(slot.Id, pending);
        }

        _bySlotId = bySlotId;
        _slotTableVersion = version;
        _lastSlotField = uint.MaxValue;
        _lastPending = null;
    }

    /// <summary>A visitor that records a ring's entries into the pending pages.</summary>
    public Recorder NewRecorder() => new(this);

    /// <summary>Whether an entry could not be placed since the last call (then every slot must be marked).</summary>
    public bool TakeUnknown()
    {
        bool unknown = _unknownSinceTaken;
        _unknownSinceTaken = false;
        return unknown;
    }

    /// <summary>Marks every page of one current slot (added while tracking: none of it was ever sent).</summary>
    /// <param name="slotId">The slot.</param>
    public void MarkSlot(uint slotId)
    {
        if (_bySlotId.TryGetValue(slotId, out PendingPages? pending))
        {
            pending.MarkAll();
        }
    }

    /// <summary>Marks every page of every current slot (a ring that may have overflowed, an entry that could not be placed).</summary>
    public void MarkEverySlot()
    {
        foreach (PendingPages pending in _bySlotId.Values)
        {
            pending.MarkAll();
        }
    }

    /// <summary>The pending pages of every slot, current or replaced; a replaced one goes once emptied (<see cref="DropEmptyReplaced"/>).</summary>
    public IEnumerable<PendingPages> Pending => _pending.Values;

    /// <summary>Forgets the pending pages of slots that were moved, resized or deleted and have been read empty.</summary>
    public void DropEmptyReplaced()
    {
        List<(uint, ulong, ulong)>? stale = null;
        foreach (KeyValuePair<(uint Id, ulong FirstPage, ulong Pages), PendingPages> entry in _pending)
        {
            if (entry.Value.IsEmpty && (!_bySlotId.TryGetValue(entry.Key.Id, out PendingPages? current) || current != entry.Value))
            {
                (stale ??= []).Add(entry.Key);
            }
        }

        foreach ((uint, ulong, ulong) key in stale ?? [])
        {
            _pending.Remove(key);
        }
    }

    /// <summary>Forgets everything (tracking stopped).</summary>
    public void Clear()
    {
        _pending.Clear();
        _bySlotId.Clear();
        _slotTableVersion = -1;
        _lastSlotField = uint.MaxValue;
        _lastPending = null;
        _unknownSinceTaken = false;
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private void Record(uint slotField, ulong offset)
    {
        // Entries come in runs from one slot: one dictionary lookup per run.
        PendingPages? pending = _lastPending;
        if (slotField != _lastSlotField)
        {
            pending = (slotField >> 16) == 0 && _bySlotId.TryGetValue(slotField & 0xFFFF, out PendingPages? found) ? found : null;
            _lastSlotField = slotField;
            _lastPending = pending;
        }

        if (pending is null || offset >= pending.Pages)
        {
            UnknownEntries++;
            _unknownSinceTaken = true;
            return;
        }

        pending.Mark(offset);
    }

    /// <summary>
    /// Records ring entries into the pending pages with no call per entry: the current slot's arrays are held here,
    /// and only a change of slot (or an entry it cannot place) goes through <see cref="Record"/>. Entries come in
    /// runs over nearby pages, so the bits of the current word are gathered in a register and stored once per word.
    /// </summary>
    internal struct Recorder(RingEntryDecoder owner) : IDirtyRingVisitor
    {
        private uint _slot = uint.MaxValue;
        private ulong _pages;
        private ulong[]? _words;
        private ulong[]? _summary;
        private ulong _word = ulong.MaxValue;
        private ulong _bits;

        public void Visit(uint slot, ulong offset)
        {
            if (slot == _slot && offset < _pages)
            {
                ulong w = offset >> 6;
                if (w != _word)
                {
                    Flush();
                    _word = w;
                }

                _bits |= 1UL << (int)(offset & 63);
                return;
            }

            Flush();
            owner.Record(slot, offset);
            PendingPages? pending = owner._lastPending;
            if (owner._lastSlotField == slot && pending is not null)
            {
                (_slot, _pages, _words, _summary) = (slot, pending.Pages, pending.Words, pending.Summary);
            }
            else
            {
                _slot = uint.MaxValue;
            }
        }

        /// <summary>Stores the gathered word; call after the harvest.</summary>
        public void Flush()
        {
            if (_bits != 0)
            {
                _words![_word] |= _bits;
                _summary![_word >> 6] |= 1UL << (int)(_word & 63);
                _bits = 0;
            }

            _word = ulong.MaxValue;
        }
    }
}
