// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Tracking;

namespace DirtyLog.Memory;

/// <summary>
/// Guest-physical memory as the regions this process maps (RAM below and above a PCI hole, DIMMs plugged later), each
/// a <see cref="HostMemoryRegion"/>; regions are added (hotplug) and removed (unplug) while the map is used. The page
/// stream and the migration sessions read and write guest memory through it.
/// </summary>
/// <remarks>
/// <para>It does not own the memory; whoever mapped a region keeps it mapped while it is in the map, and until
/// <see cref="Remove"/> returned for it: removal waits for every page copy that is reading or writing the region (a
/// copy holds a region for one record, at most 1 MiB, never across an await; the source's memory digest, computed
/// after the switch-over, for its whole pass), so the VMM may unmap the region as soon as <see cref="Remove"/> returns.</para>
/// <para>Regions are 4 KiB aligned in guest-physical space (their start and length; the host address may be anything,
/// a managed buffer's too), non-empty, and do not overlap there.
/// <see cref="GuestMemoryView"/> is the one-region case at address 0.</para>
/// <para><b>Thread safety.</b> Every member may be called from any thread. Readers see an immutable snapshot of the
/// regions taken at one instant; <see cref="Add"/> and <see cref="Remove"/> are serialised by one lock and replace the
/// snapshot atomically. <see cref="Remove"/> must not be called from a thread that is inside one of the library's page
/// copies of the same map (the hooks of a session are not).</para>
/// </remarks>
public sealed partial class GuestMemoryMap
{
    private readonly Lock _gate = new();
    private readonly List<Snapshot> _retired = []; // replaced snapshots that may still have readers; under _gate
    private Snapshot _current;

    /// <summary>A map of no regions yet (a destination that maps its memory as the source announces it).</summary>
    public GuestMemoryMap()
    {
        _current = new Snapshot([], 0);
    }

    /// <summary>A map of <paramref name="regions"/>.</summary>
    /// <param name="regions">The regions, in any order.</param>
    /// <exception cref="ArgumentException">A region is empty, unaligned, unmapped, wraps, or overlaps another.</exception>
    public GuestMemoryMap(IEnumerable<HostMemoryRegion> regions)
        : this()
    {
        ArgumentNullException.ThrowIfNull(regions);
        foreach (HostMemoryRegion region in regions)
        {
            Add(region);
        }
    }

    /// <summary>A map of one region: <paramref name="memory"/> at guest-physical address 0.</summary>
    /// <param name="memory">The memory.</param>
    public GuestMemoryMap(GuestMemoryView memory)
        : this()
    {
        ArgumentNullException.ThrowIfNull(memory);
        Add(new HostMemoryRegion(memory.Address, 0, memory.Size));
    }

    /// <summary>The regions now, by guest-physical address: a snapshot that later changes do not alter.</summary>
    public IReadOnlyList<HostMemoryRegion> Regions => Volatile.Read(ref _current).Regions;

    /// <summary>Bytes of all regions now.</summary>
    public ulong Size => Volatile.Read(ref _current).Size;

    /// <summary>A number that changes whenever a region is added or removed.</summary>
    public long Version => Volatile.Read(ref _current).Version;

    /// <summary>Adds a region (memory plugged in). A migration session that runs sends all of it and then follows its writes.</summary>
    /// <param name="region">The region, mapped in this process.</param>
    /// <exception cref="ArgumentException">The region is empty, unaligned in guest-physical space, unmapped, wraps, or overlaps a region of the map.</exception>
    public void Add(HostMemoryRegion region)
    {
        if (region.HostAddress == 0 || region.Length == 0 || ((region.GuestAddress | region.Length) & 4095) != 0
            || region.GuestAddress + region.Length < region.GuestAddress || (ulong)region.HostAddress + region.Length < (ulong)region.HostAddress)
        {
            throw new ArgumentException($"A region of {region.Length:N0} bytes at guest 0x{region.GuestAddress:x}, host 0x{region.HostAddress:x}: it must be mapped, non-empty, 4 KiB aligned in guest-physical space and not wrap.", nameof(region));
        }

        lock (_gate)
        {
            Snapshot now = _current;
            if (now.IndexOverlapping(region.GuestAddress, region.Length) is int other and >= 0)
            {
                HostMemoryRegion taken = now.Regions[other];
                throw new ArgumentException($"The region at guest 0x{region.GuestAddress:x} (+{region.Length:N0}) overlaps the one at 0x{taken.GuestAddress:x} (+{taken.Length:N0}).", nameof(region));
            }

            var regions = new List<HostMemoryRegion>(now.Regions) { region };
            regions.Sort((a, b) => a.GuestAddress.CompareTo(b.GuestAddress));
            Replace(new Snapshot([.. regions], now.Version + 1));
        }
    }

    /// <summary>
    /// Removes the region that starts at <paramref name="guestAddress"/> (memory unplugged), and returns once no page
    /// copy reads or writes it: the VMM may unmap it then. A migration session that runs stops sending it, and the
    /// destination is told to drop it.
    /// </summary>
    /// <param name="guestAddress">Where the region starts in guest-physical space.</param>
    /// <returns>The region removed.</returns>
    /// <exception cref="ArgumentException">No region starts there.</exception>
    public HostMemoryRegion Remove(ulong guestAddress)
    {
        Snapshot old;
        HostMemoryRegion removed;
        lock (_gate)
        {
            old = _current;
            int index = old.IndexOf(guestAddress);
            if (index < 0 || old.Regions[index].GuestAddress != guestAddress)
            {
                throw new ArgumentException($"No region starts at guest 0x{guestAddress:x}.", nameof(guestAddress));
            }

            removed = old.Regions[index];
            var regions = new List<HostMemoryRegion>(old.Regions);
            regions.RemoveAt(index);
            Replace(new Snapshot([.. regions], old.Version + 1));
        }

        // No reader enters a replaced snapshot (see Enter); wait for those inside any that held the region.
        WaitForReaders(removed);
        return removed;
    }

    /// <summary>
    /// The bytes at [<paramref name="address"/>, + <paramref name="length"/>), which must lie in one region. The caller
    /// keeps that region in the map while it uses the span.
    /// </summary>
    /// <param name="address">The guest-physical address.</param>
    /// <param name="length">Bytes.</param>
    /// <returns>A span over guest memory (it may change under the reader while the guest runs).</returns>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside one region.</exception>
    public Span<byte> Slice(ulong address, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        Snapshot now = Volatile.Read(ref _current);
        int index = now.IndexOf(address);
        if (index < 0 || !Contains(now.Regions[index], address, (ulong)length))
        {
            throw new ArgumentOutOfRangeException(nameof(address), address, $"[0x{address:x}, +{length}) is not inside one region of guest memory.");
        }

        return Span(now.Regions[index], address, length);
    }

    /// <summary>The region holding all of [<paramref name="address"/>, + <paramref name="length"/>), if one does.</summary>
    /// <param name="address">The guest-physical address.</param>
    /// <param name="length">Bytes (at least one).</param>
    /// <param name="region">The region.</param>
    /// <returns>Whether one region holds the whole range.</returns>
    public bool TryGetRegion(ulong address, ulong length, out HostMemoryRegion region)
    {
        Snapshot now = Volatile.Read(ref _current);
        int index = now.IndexOf(address);
        if (index >= 0 && length != 0 && Contains(now.Regions[index], address, length))
        {
            region = now.Regions[index];
            return true;
        }

        region = default;
        return false;
    }

    internal static bool Contains(HostMemoryRegion region, ulong address, ulong length) =>
        address >= region.GuestAddress && length <= region.Length && address - region.GuestAddress <= region.Length - length;

    internal static unsafe Span<byte> Span(HostMemoryRegion region, ulong address, int length) =>
        new((byte*)region.HostAddress + (address - region.GuestAddress), length);

    private void Replace(Snapshot next)
    {
        Snapshot old = Interlocked.Exchange(ref _current, next); // a full fence: see Enter
        _retired.RemoveAll(s => Volatile.Read(ref s.Readers) == 0);
        _retired.Add(old);
    }

    private void WaitForReaders(HostMemoryRegion removed)
    {
        Snapshot[] holding;
        lock (_gate)
        {
            holding = _retired.FindAll(s => Array.IndexOf(s.Regions, removed) >= 0).ToArray();
        }

        foreach (Snapshot snapshot in holding)
        {
            var wait = new SpinWait();
            while (Volatile.Read(ref snapshot.Readers) != 0)
            {
                wait.SpinOnce(sleep1Threshold: 20); // a copy holds a snapshot for one record (microseconds to a millisecond); then it sleeps
            }
        }
    }
}
