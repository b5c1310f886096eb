// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;
using DirtyLog.Tracking;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>The source VMM of the hotplug rig: pauses and resumes its guest, saves one section.</summary>
internal sealed class HotplugSourceHooks(RegionGuest guest) : IMigrationSourceHooks
{
    /// <summary>Run inside the pause hook, after the guest stopped.</summary>
    public Action? WhilePausing { get; set; }

    public ValueTask PauseAsync(CancellationToken cancellationToken)
    {
        guest.Pause();
        WhilePausing?.Invoke();
        return ValueTask.CompletedTask;
    }

    public ValueTask ResumeAsync(CancellationToken cancellationToken)
    {
        guest.Resume();
        return ValueTask.CompletedTask;
    }

    /// <summary>Run inside the save-state hook, after the final harvest was sent.</summary>
    public Action? WhileSaving { get; set; }

    public ValueTask<IReadOnlyList<MigrationStateSection>> SaveStateAsync(CancellationToken cancellationToken)
    {
        WhileSaving?.Invoke();
        return ValueTask.FromResult<IReadOnlyList<MigrationStateSection>>([new MigrationStateSection("vcpu0", 1, new byte[] { 7 })]);
    }

    public void Throttle(ThrottleRequest request)
    {
    }
}

/// <summary>
/// The destination VMM of the hotplug rig: maps each region the source announces out of its own backing (at the same
/// offset as its guest address) and adds it to its map; lets go of those unplugged; refuses where a test says.
/// </summary>
internal sealed class HotplugDestinationHooks(GuestMemoryMap memory, nint backing, ulong backingBytes) : IMigrationDestinationHooks, IMigrationDestinationMemoryHooks
{
    private int _resumed;

    public List<AddressRange> Added { get; } = [];

    public List<AddressRange> Removed { get; } = [];

    /// <summary>Whether to refuse a region (a guest's maximum memory, say).</summary>
    public Func<AddressRange, bool> Refuse { get; set; } = _ => false;

    public bool Resumed => Volatile.Read(ref _resumed) != 0;

    public ValueTask AddRegionAsync(AddressRange region, CancellationToken cancellationToken)
    {
        if (Refuse(region) || region.Start + region.Length > backingBytes)
        {
            throw new InvalidOperationException($"this guest may not have memory at 0x{region.Start:x} (+{region.Length:N0} bytes)");
        }

        memory.Add(new HostMemoryRegion(backing + (nint)region.Start, region.Start, region.Length));
        Added.Add(region);
        return ValueTask.CompletedTask;
    }

    public ValueTask RemoveRegionAsync(AddressRange region, CancellationToken cancellationToken)
    {
        memory.Remove(region.Start);
        Removed.Add(region);
        return ValueTask.CompletedTask;
    }

    public ValueTask LoadStateAsync(MigrationStateSection section, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask ResumeAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _resumed, 1) != 0)
        {
            throw new InvalidOperationException("resumed twice");
        }

        return ValueTask.CompletedTask;
    }
}
