// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Memory;
using DirtyLog.Migration.Sessions;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tracking;

namespace DirtyLog.Tests.Migration.Transport;

/// <summary>A source guest that does not write while it migrates: random pages, one tracker, no-op hooks.</summary>
internal sealed class StaticGuest : IDisposable, IMigrationSourceHooks
{
    public const int Bytes = 4 << 20;

    private readonly AnonymousMapping _mapping = new(Bytes);
    private readonly SparseDirtyBitmap _shared = new(40);
    private readonly EmulatedTracker _tracker = new("vcpus", new AddressRange(0, Bytes));

    public StaticGuest(int seed)
    {
        Memory = new GuestMemoryView(_mapping.Address, Bytes);
        new Random(seed).NextBytes(Memory.Slice(0, Bytes / 2));
    }

    public GuestMemoryView Memory { get; }

    public async Task<MigrationOutcome> MigrateAsync(Stream connection, MigrationSourceOptions? options = null)
    {
        using var harvester = new ParallelHarvester(_shared);
        harvester.Add(_tracker, TrackerFaultPolicy.FailRound);
        var session = new MigrationSource(harvester, Memory, connection, this, options ?? new MigrationSourceOptions { HandshakeTimeout = TimeSpan.FromSeconds(10) });
        MigrationOutcome outcome = await session.RunAsync();
        harvester.Remove(_tracker);
        return outcome;
    }

    public ValueTask PauseAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask ResumeAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask<IReadOnlyList<MigrationStateSection>> SaveStateAsync(CancellationToken cancellationToken) =>
        ValueTask.FromResult<IReadOnlyList<MigrationStateSection>>([]);

    public void Throttle(DirtyLog.Migration.ThrottleRequest request)
    {
    }

    public void Dispose()
    {
        _tracker.Dispose();
        _shared.Dispose();
        _mapping.Dispose();
    }
}
