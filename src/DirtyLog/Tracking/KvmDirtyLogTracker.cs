// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Native;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Tracking;

/// <summary>
/// Pages written by vCPUs, from KVM's dirty bitmap of one memory slot, in guest-physical space.
/// </summary>
/// <remarks>
/// <para>Two modes, chosen by the VM: <b>classic</b> (<c>KVM_GET_DIRTY_LOG</c> fetches and re-protects in one call)
/// and <b>manual protect</b> (the VM enabled <c>KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2</c>: GET only copies, and a
/// clearing read then issues <c>KVM_CLEAR_DIRTY_LOG</c> with exactly the bits it fetched, over the whole slot, which
/// satisfies the 64-page alignment rule and its tail exception). Reading page contents must come after the read
/// returns: a write between GET and CLEAR is caught by the re-protection. A no-clear read is possible in manual mode.</para>
/// <para>Starting and stopping toggle <c>KVM_MEM_LOG_DIRTY_PAGES</c> on the slot. KVM's log is per slot, so a read
/// reports the whole slot whatever part of it the range covers (a classic read clears it all; dropping the rest would
/// lose it). Thread safety: as <see cref="IDirtyTracker"/>.</para>
/// </remarks>
public sealed class KvmDirtyLogTracker : DirtyTrackerBase
{
    private readonly IKvmDirtyLogPort _port;
    private readonly KvmMemorySlot _slot;
    private readonly ulong[] _bitmap;

    /// <summary>Creates a tracker for one slot of a VM.</summary>
    /// <param name="port">The VM's dirty-log facility: <see cref="KvmVmPort"/> over a real VM, or the emulated VM of DirtyLog.Testing.</param>
    /// <param name="slotId">The slot, already created.</param>
    /// <param name="name">A name; <c>kvm-log:slotN</c> by default.</param>
    /// <exception cref="ArgumentException">The slot does not exist.</exception>
    public KvmDirtyLogTracker(IKvmDirtyLogPort port, uint slotId, string? name = null)
        : base(name ?? $"kvm-log:slot{slotId}", DirtyAddressSpace.GuestPhysical, 4096)
    {
        ArgumentNullException.ThrowIfNull(port);
        _port = port;
        _slot = port.GetSlots().FirstOrDefault(s => s.Id == slotId) ?? throw new ArgumentException($"Memory slot {slotId} does not exist.", nameof(slotId));
        _bitmap = new ulong[(_slot.Pages + 63) / 64];
    }

    /// <summary>Whether the VM uses manual dirty-log protection.</summary>
    public bool ManualProtect => _port.ManualProtect;

    /// <inheritdoc/>
    public override IReadOnlyList<AddressRange> Coverage => [new AddressRange(_slot.GuestAddress, _slot.Size)];

    /// <inheritdoc/>
    public override bool CanReadWithoutClear => ManualProtect;

    /// <inheritdoc/>
    protected override void OnStart() => _port.SetDirtyLogging(_slot.Id, true);

    /// <inheritdoc/>
    protected override void OnStop() => _port.SetDirtyLogging(_slot.Id, false);

    /// <inheritdoc/>
    protected override ulong ReadCore(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode)
    {
        if (range.Intersect(Coverage[0]).IsEmpty)
        {
            return 0;
        }

        // GET overwrites every word of the slot's bitmap: no clearing needed.
        _port.GetDirtyLog(_slot.Id, _bitmap);

        // In manual mode the pages are handed over before CLEAR: CLEAR re-protects and flushes TLBs, after which first
        // touches of memory are dearer on nested hosts; and a hand-over that fails leaves the bits in KVM for the next
        // read. The caller reads page contents after this read returns, so after the re-protection either way.
        ulong count = Deliver(_bitmap, _slot.Pages, _slot.GuestAddress, sink);
        if (ManualProtect && mode == DirtyReadMode.Clear)
        {
            _port.ClearDirtyLog(_slot.Id, 0, (uint)_slot.Pages, _bitmap);
        }

        return count;
    }
}
