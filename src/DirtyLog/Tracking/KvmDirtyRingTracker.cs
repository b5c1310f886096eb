// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Native;

namespace DirtyLog.Tracking;

/// <summary>
/// Pages written by vCPUs, from KVM's per-vCPU dirty rings, in guest-physical space.
/// </summary>
/// <remarks>
/// <para>A reap harvests every ring in order (acquire loads of each entry's flags, a release store marking it for
/// reset), decodes <c>(as_id, slot, offset)</c> through the VM's slot table into a pending bitmap, then calls
/// <c>KVM_RESET_DIRTY_RINGS</c>; a read reaps and hands over the pending pages. Reaps happen on every read, when the VMM's
/// run loop hands over a <c>KVM_EXIT_DIRTY_RING_FULL</c> (<see cref="Reap"/>), and from a reaper at a cadence if the VMM
/// runs one (QEMU does): a ring must never fill between reaps.</para>
/// <para><b>Never silent loss.</b> On this kind of host the soft-full limit was measured not to hold within one
/// <c>KVM_RUN</c>: a run that dirtied more pages than the ring holds lost entries. So a reap that finds a ring at or past
/// its soft limit (entries minus KVM's 64 reserved and a 512-entry PML batch) treats the ring as possibly overflowed:
/// it marks every slot of the VM dirty and counts it in <see cref="Overflows"/>. Over-reporting, never loss.</para>
/// <para><b>A wedged ring.</b> On the same hosts, after such an overshoot KVM can keep answering
/// <c>KVM_EXIT_DIRTY_RING_FULL</c> with no entry left to harvest, so the vCPU can never re-enter. Nothing in user space
/// unwedges it. A run loop that sees a ring-full exit whose <see cref="Reap"/> returns 0 twice should stop the VM's ring
/// mode (every slot is already marked dirty) and fall back to <see cref="KvmDirtyLogTracker"/> on a new VM or at the next
/// migration. Reaping long before the ring fills (at a cadence, from another thread) avoids the overshoot.</para>
/// <para>Thread safety: <see cref="Reap"/> may be called from the vCPU thread while reads run elsewhere; they are
/// serialised. Reads of page contents must follow the read that reported them (the reset re-protects first).</para>
/// </remarks>
public sealed class KvmDirtyRingTracker : DirtyTrackerBase
{
    private const uint ReservedEntries = 64 + 512;

    private readonly KvmVm _vm;
    private readonly KvmDirtyRing[] _rings;
    private readonly Lock _ringGate = new();
    private readonly SparseDirtyBitmap _pending = new(52);
    private readonly ulong[] _scratch = new ulong[4096];
    private long _overflows;
    private long _entries;
    private long _unknownEntries;
    private bool _unknownSinceReap; // touched only under _ringGate
    private Dictionary<uint, KvmMemorySlot> _reapSlots = new();

    /// <summary>Creates a tracker over the rings of a VM's vCPUs.</summary>
    /// <param name="vm">The VM, created with a dirty ring.</param>
    /// <param name="rings">The rings of its vCPUs.</param>
    /// <param name="name">A name; <c>kvm-ring</c> by default.</param>
    public KvmDirtyRingTracker(KvmVm vm, IEnumerable<KvmDirtyRing> rings, string? name = null)
        : base(name ?? "kvm-ring", DirtyAddressSpace.GuestPhysical, 4096)
    {
        ArgumentNullException.ThrowIfNull(vm);
        ArgumentNullException.ThrowIfNull(rings);
        if (vm.DirtyRingEntries == 0)
        {
            throw new ArgumentException("The VM has no dirty ring: enable it before creating vCPUs.", nameof(vm));
        }

        _vm = vm;
        _rings = rings.ToArray();
        if (_rings.Length == 0)
        {
            throw new ArgumentException("At least one vCPU ring is needed.", nameof(rings));
        }
    }

    /// <summary>Reaps that found a ring at or past its soft limit and marked every slot dirty instead.</summary>
    public long Overflows => Interlocked.Read(ref _overflows);

    /// <summary>What the last <c>KVM_RESET_DIRTY_RINGS</c> returned (diagnostics).</summary>
    public int LastResetCount { get; private set; }

    /// <summary>Ring entries harvested so far.</summary>
    public long EntriesHarvested => Interlocked.Read(ref _entries);

    /// <summary>Entries naming a slot the VM's table does not know (another address space): their slot is unknown, so every slot was marked.</summary>
    public long UnknownEntries => Interlocked.Read(ref _unknownEntries);

    /// <inheritdoc/>
    public override IReadOnlyList<AddressRange> Coverage =>
        _vm.GetSlots().OrderBy(s => s.GuestPhysicalAddress).Select(s => new AddressRange(s.GuestPhysicalAddress, s.Size)).ToArray();

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
            // One snapshot of the slot table per reap: entries decode through it.
            _reapSlots = _vm.GetSlots().ToDictionary(s => s.Id);
            int total = 0;
            bool markAll = false;
            foreach (KvmDirtyRing ring in _rings)
            {
                int n = ring.Harvest(Record);
                total += n;
                if ((uint)n >= ring.Entries - Math.Min(ring.Entries / 2, ReservedEntries))
                {
                    markAll = true;
                    Interlocked.Increment(ref _overflows);
                }
            }

            LastResetCount = _vm.ResetDirtyRings();

            if (markAll || _unknownSinceReap)
            {
                _unknownSinceReap = false;
                MarkEverySlot();
            }

            Interlocked.Add(ref _entries, total);
            return total;
        }
    }

    /// <inheritdoc/>
    protected override void OnStart()
    {
        foreach (KvmMemorySlot slot in _vm.GetSlots())
        {
            _vm.SetMemorySlot(slot with { LogDirtyPages = true });
        }
    }

    /// <inheritdoc/>
    protected override void OnStop()
    {
        foreach (KvmMemorySlot slot in _vm.GetSlots())
        {
            _vm.SetMemorySlot(slot with { LogDirtyPages = false });
        }

        Reap();
        var sink = default(DiscardSink);
        _pending.Harvest(ref sink);
    }

    /// <inheritdoc/>
    protected override ulong ReadCore(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode)
    {
        Reap();
        ulong count = 0;
        ulong chunkBytes = (ulong)_scratch.Length * 64 * 4096;
        foreach (AddressRange slot in Coverage)
        {
            AddressRange piece = slot.Intersect(range);
            for (ulong start = piece.Start; start < piece.End; start += chunkBytes)
            {
                ulong length = Math.Min(chunkBytes, piece.End - start);
                ulong bits = length / 4096;
                Span<ulong> words = _scratch.AsSpan(0, (int)((bits + 63) / 64));
                words.Clear();
                var fill = new BitFill(words, start / 4096);
                _pending.HarvestRange(start / 4096, bits, ref fill);
                count += Deliver(words, bits, start, sink);
            }
        }

        return count;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        _pending.Dispose();
        base.Dispose(disposing);
    }

    private void Record(uint slotField, ulong offset)
    {
        uint asId = slotField >> 16;
        if (asId != 0 || !_reapSlots.TryGetValue(slotField & 0xFFFF, out KvmMemorySlot? slot) || offset >= slot.Pages)
        {
            Interlocked.Increment(ref _unknownEntries);
            _unknownSinceReap = true;
            return;
        }

        _pending.Mark((slot.GuestPhysicalAddress / 4096) + offset);
    }

    private void MarkEverySlot()
    {
        foreach (KvmMemorySlot slot in _vm.GetSlots())
        {
            _pending.MarkRange(slot.GuestPhysicalAddress / 4096, slot.Pages);
        }
    }

    /// <summary>Sets the bits of harvested runs in a kernel-format buffer whose bit 0 is <c>firstPage</c>.</summary>
    private readonly ref struct BitFill : IDirtyRunSink
    {
        private readonly Span<ulong> _words;
        private readonly ulong _firstPage;

        public BitFill(Span<ulong> words, ulong firstPage)
        {
            _words = words;
            _firstPage = firstPage;
        }

        public bool TryAccept(DirtyRun run)
        {
            for (ulong p = run.FirstPage - _firstPage; p < run.EndPage - _firstPage; p++)
            {
                _words[(int)(p / 64)] |= 1UL << (int)(p % 64);
            }

            return true;
        }
    }

    private struct DiscardSink : IDirtyRunSink
    {
        public readonly bool TryAccept(DirtyRun run) => true;
    }
}
