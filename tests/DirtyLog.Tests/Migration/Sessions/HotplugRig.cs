// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tracking;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// A migration of a guest whose memory is regions with holes between them, some plugged in or out while it migrates.
/// Each side backs guest-physical address A at offset A of one mapping of its own; the tracker covers the whole
/// space, as KVM's trackers follow every slot the VMM declares.
/// </summary>
internal sealed class HotplugRig : IDisposable
{
    public const ulong MiB = 1UL << 20;
    public const ulong Space = 64 * MiB;

    private readonly AnonymousMapping _sourceBacking = new(Space);
    private readonly AnonymousMapping _destinationBacking = new(Space);
    private readonly SparseDirtyBitmap _shared = new(40);
    private readonly Random _random;

    /// <summary>A guest of <paramref name="layout"/> (guest address and length of each region), its pages a quarter data.</summary>
    public HotplugRig(int seed, bool destinationMapsOnDemand, params (ulong Address, ulong Length)[] layout)
    {
        _random = new Random(seed);
        HostMemoryRegion[] regions = [.. layout.Select(r => SourceRegion(r.Address, r.Length))];
        foreach (HostMemoryRegion region in regions)
        {
            Fill(region);
        }

        SourceMap = new GuestMemoryMap(regions);
        DestinationMap = destinationMapsOnDemand ? new GuestMemoryMap() : new GuestMemoryMap(layout.Select(r => DestinationRegion(r.Address, r.Length)));
        Tracker = new EmulatedTracker("vcpus", new AddressRange(0, Space));
        Harvester = new ParallelHarvester(_shared);
        Harvester.Add(Tracker, TrackerFaultPolicy.FailRound);
        Guest = new RegionGuest(regions, Tracker, seed);
        SourceHooks = new HotplugSourceHooks(Guest);
        DestinationHooks = new HotplugDestinationHooks(DestinationMap, _destinationBacking.Address, Space);
    }

    public GuestMemoryMap SourceMap { get; }

    public GuestMemoryMap DestinationMap { get; }

    public EmulatedTracker Tracker { get; }

    public ParallelHarvester Harvester { get; }

    public RegionGuest Guest { get; }

    public HotplugSourceHooks SourceHooks { get; }

    public HotplugDestinationHooks DestinationHooks { get; }

    /// <summary>Destination hooks without the memory hooks: the destination's map must hold every region already.</summary>
    public bool DestinationHasNoMemoryHooks { get; set; }

    public MigrationSourceOptions SourceOptions { get; set; } = new()
    {
        PreCopy = new PreCopyOptions { DowntimeLimit = TimeSpan.FromMilliseconds(5), MaxRounds = 6 },
        AnswerTimeout = TimeSpan.FromSeconds(20),
    };

    /// <summary>The source's region for guest range [<paramref name="address"/>, + <paramref name="length"/>).</summary>
    public HostMemoryRegion SourceRegion(ulong address, ulong length) => new(_sourceBacking.Address + (nint)address, address, length);

    /// <summary>The destination's region for the same range.</summary>
    public HostMemoryRegion DestinationRegion(ulong address, ulong length) => new(_destinationBacking.Address + (nint)address, address, length);

    /// <summary>Random data in every fourth page, written as memory that was there before tracking (no dirty bit).</summary>
    public void Fill(HostMemoryRegion region)
    {
        for (ulong page = 0; page < region.Length / 4096; page += 4)
        {
            _random.NextBytes(Bytes(region, page * 4096, 4096));
        }
    }

    /// <summary>The VMM plugs a region in, in the order the sessions document: slot (the tracker covers it), map, guest.</summary>
    public void PlugIn(HostMemoryRegion region, bool addToMap = true)
    {
        Fill(region);
        if (addToMap)
        {
            SourceMap.Add(region);
        }

        Guest.Use(region);
    }

    /// <summary>The VMM unplugs a region: the guest lets go, then the map (which waits for the copy in flight).</summary>
    public void Unplug(HostMemoryRegion region)
    {
        Guest.LetGo(region);
        SourceMap.Remove(region.GuestAddress);
    }

    /// <summary>Runs both sessions with the guest running from the start.</summary>
    /// <param name="onSourceProgress">Told of the source's progress inline, on the session's task.</param>
    /// <param name="beforeSourceWrite">Called before each of the source's writes with its phase and the bytes written so far, on the writing thread.</param>
    public async Task<(MigrationOutcome Source, MigrationOutcome Destination)> RunAsync(Action<MigrationProgress>? onSourceProgress = null, Action<MigrationPhase, long>? beforeSourceWrite = null)
    {
        using CuttableConnection connection = await CuttableConnection.OpenAsync().ConfigureAwait(false);

        IMigrationDestinationHooks hooks = DestinationHasNoMemoryHooks ? new PlainHooks(DestinationHooks) : DestinationHooks;
        var destination = new MigrationDestination(DestinationMap, connection.Destination, hooks, new MigrationDestinationOptions { MemoryStartsZeroed = true });
        var source = new MigrationSource(Harvester, SourceMap, connection.Source, SourceHooks, SourceOptions);
        if (beforeSourceWrite is not null)
        {
            connection.Source.CutBeforeWrite = written =>
            {
                beforeSourceWrite(source.Progress.Phase, written);
                return false;
            };
        }
        Guest.Resume();
        Task<MigrationOutcome> received = Task.Run(async () =>
        {
            MigrationOutcome outcome = await destination.RunAsync().ConfigureAwait(false);
            connection.CloseDestination();
            return outcome;
        });
        Task<MigrationOutcome> sent = Task.Run(async () =>
        {
            MigrationOutcome outcome = await source.RunAsync(onSourceProgress is null ? null : new InlineProgress(onSourceProgress)).ConfigureAwait(false);
            connection.CloseSource();
            return outcome;
        });
        await Task.WhenAll(sent, received).WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
        return (await sent.ConfigureAwait(false), await received.ConfigureAwait(false));
    }

    /// <summary>
    /// The guest runs on exactly one side; a destination that runs it has the regions the guest uses, no other, each
    /// byte for byte as the paused source's.
    /// </summary>
    public string? Judge(MigrationOutcome source, MigrationOutcome destination)
    {
        bool onSource = Guest.IsRunning, onDestination = DestinationHooks.Resumed;
        if (onSource == onDestination)
        {
            return onSource ? "the guest runs on both hosts" : "the guest runs nowhere";
        }

        if ((source.End == MigrationEnd.RunningOnDestination) != onDestination || (destination.End == MigrationEnd.RunningOnDestination) != onDestination)
        {
            return $"the outcomes say {source.End} and {destination.End} while the guest runs on the {(onSource ? "source" : "destination")}";
        }

        if (!onDestination)
        {
            return null;
        }

        var used = Guest.Regions.Select(r => (r.GuestAddress, r.Length)).OrderBy(r => r.GuestAddress).ToArray();
        var mapped = DestinationMap.Regions.Select(r => (r.GuestAddress, r.Length)).ToArray();
        foreach ((ulong address, ulong length) in used)
        {
            if (!mapped.Contains((address, length)))
            {
                return $"the guest's region at 0x{address:x} (+{length:N0}) is missing at the destination";
            }

            HostMemoryRegion there = DestinationMap.Regions.First(r => r.GuestAddress == address);
            HostMemoryRegion here = Guest.Regions.First(r => r.GuestAddress == address);
            for (ulong offset = 0; offset < length; offset += 4096)
            {
                if (!Bytes(here, offset, 4096).SequenceEqual(Bytes(there, offset, 4096)))
                {
                    return $"the destination runs the guest with page 0x{address + offset:x} unlike the source's";
                }
            }
        }

        if (mapped.Except(used).FirstOrDefault() is { Length: not 0 } extra)
        {
            return $"the destination holds a region at 0x{extra.GuestAddress:x} the guest does not use";
        }

        return null;
    }

    public void Dispose()
    {
        Guest.Dispose();
        Harvester.Dispose();
        Tracker.Dispose();
        _shared.Dispose();
        _sourceBacking.Dispose();
        _destinationBacking.Dispose();
    }

    private static unsafe Span<byte> Bytes(HostMemoryRegion region, ulong offset, int length) => new((byte*)region.HostAddress + offset, length);

    /// <summary>The destination's hooks without its memory hooks.</summary>
    private sealed class PlainHooks(HotplugDestinationHooks inner) : IMigrationDestinationHooks
    {
        public ValueTask LoadStateAsync(MigrationStateSection section, CancellationToken cancellationToken) => inner.LoadStateAsync(section, cancellationToken);

        public ValueTask ResumeAsync(CancellationToken cancellationToken) => inner.ResumeAsync(cancellationToken);
    }

    private sealed class InlineProgress(Action<MigrationProgress> report) : IProgress<MigrationProgress>
    {
        public void Report(MigrationProgress value) => report(value);
    }
}
