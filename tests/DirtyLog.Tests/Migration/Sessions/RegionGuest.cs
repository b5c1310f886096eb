// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Memory;
using DirtyLog.Testing;
using DirtyLog.Tracking;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// A guest whose memory is several regions, some plugged in or out while it runs: one writer thread stores a running
/// counter into pseudo-random pages of the regions it was given and logs each write after it landed. As a real guest,
/// it is told of a region only after the VMM plugged it in, and lets go of one before the VMM unplugs it.
/// </summary>
/// <remarks>
/// <see cref="Use"/> and <see cref="LetGo"/> from one thread (the test's VMM); <see cref="LetGo"/> returns once the
/// writer no longer touches the region, so the VMM may remove it. Pause and resume as for <see cref="GuestWriterThread"/>.
/// </remarks>
internal sealed class RegionGuest : GuestWriterThread
{
    private readonly EmulatedTracker _tracker;
    private readonly Lock _regionsGate = new(); // the writer holds it for each batch: LetGo waits for the batch in flight
    private readonly List<HostMemoryRegion> _regions = [];

    public RegionGuest(IEnumerable<HostMemoryRegion> regions, EmulatedTracker tracker, int seed)
        : base(seed)
    {
        _regions.AddRange(regions);
        _tracker = tracker;
    }

    /// <summary>The regions the guest uses now.</summary>
    public IReadOnlyList<HostMemoryRegion> Regions
    {
        get
        {
            lock (_regionsGate)
            {
                return [.. _regions];
            }
        }
    }

    /// <summary>The guest is told of a plugged-in region (ACPI, virtio-mem): it writes there from now on.</summary>
    public void Use(HostMemoryRegion region)
    {
        lock (_regionsGate)
        {
            _regions.Add(region);
        }
    }

    /// <summary>The guest lets go of a region before it is unplugged; returns once no write of its is in flight there.</summary>
    public void LetGo(HostMemoryRegion region)
    {
        lock (_regionsGate)
        {
            _regions.Remove(region);
        }
    }

    protected override void WriteBatch(Random random)
    {
        lock (_regionsGate)
        {
            for (int i = 0; i < 64 && _regions.Count > 0; i++)
            {
                HostMemoryRegion region = _regions[random.Next(_regions.Count)];
                ulong page = (ulong)random.NextInt64((long)(region.Length / 4096));
                long value = NextValue();
                ulong address = region.GuestAddress + (page * 4096) + ((ulong)(value % 512) * 8);
                unsafe
                {
                    *(long*)(region.HostAddress + (nint)(address - region.GuestAddress)) = value;
                }

                _tracker.Write(address);
            }
        }
    }
}
