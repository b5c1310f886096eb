// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Consumers;
using DirtyLog.Harvesting;
using DirtyLog.Migration;
using DirtyLog.Snapshots;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// Incremental snapshots of the running boot-sector guest: a full snapshot, then a chain of diffs while the guest
/// runs, each taken in a short pause of its vCPU; then the check that the chain equals a full snapshot of the last
/// state, byte for byte, and a new VM restored from it that resumes and keeps the guest's invariant.
/// </summary>
/// <remarks>
/// Two ways to keep a link consistent while the guest runs. By default the pause covers the harvest and the copy of
/// the link (the guest dirties nothing meanwhile). With write protection the pause covers the harvest and the
/// protection of the link's pages; the vCPU resumes at once and the link is written after, each page copied before
/// the guest's write reaches it (<see cref="CopyBeforeWriteGuard"/>). Either way the dirty log is read once per link
/// and published to the snapshot chain's consumer, which takes only what changed since the previous link.
/// </remarks>
internal static class SnapshotDemo
{
    /// <summary>Runs the demonstration; 0 when the chain equals the full snapshot and the restored guest keeps its invariant.</summary>
    public static async Task<int> RunAsync(MigrationOptions options, int diffs, TimeSpan interval, string? directory, bool writeProtect = false)
    {
        options = options with { VcpuOnly = true };
        using var vm = new SourceVm(options);
        if (!vm.UsesKvm)
        {
            Console.Error.WriteLine("snapshots need the KVM guest (its vCPU pauses and resumes): /dev/kvm is missing or --no-kvm was given");
            return 2;
        }

        string dir = directory ?? Directory.CreateTempSubdirectory("dirtylog-snapshots-").FullName;
        Directory.CreateDirectory(dir);
        BootGuest guest = vm.Guest!;
        using var consumers = new DirtyConsumerSet(40);
        using DirtyConsumer chainConsumer = consumers.Register("snapshots");
        using var rates = new DirtyRateMonitor(consumers, vm.MeasureVcpuDirtyRates()); // a second consumer of the same rounds
        using CopyBeforeWriteGuard? guard = writeProtect ? new CopyBeforeWriteGuard(vm.Memory) : null;
        var chain = new SnapshotRun(vm, guest, consumers, chainConsumer, rates, new SnapshotChainWriter(vm.Memory), guard);
        Console.WriteLine($"snapshots of a KVM guest ({options.GuestBytes >> 20} MiB, its boot sector incrementing {guest.Pages:N0} pages pass after pass) in {dir}; " +
            (writeProtect ? "each link written after the vCPU resumes, its pages write-protected in the pause" : "each link written in the vCPU's pause"));

        vm.BeginTracking();
        vm.Start();
        await Task.Delay(options.Warmup).ConfigureAwait(false);

        // The base: the round's pages go to the consumer and are dropped, since the full copy holds every page.
        var paths = new List<string>();
        LinkReport full = await chain.TakeLinkAsync(Path.Combine(dir, "0.full"), full: true, last: false).ConfigureAwait(false);
        paths.Add(full.Path);
        Console.WriteLine($"full: {full.Summary.DataPages:N0} data pages, {full.Summary.ZeroPages:N0} zero pages (holes), {full.Summary.Bytes / 1024.0 / 1024.0:F1} MiB; {full.Timing()}");

        LinkReport link = full;
        for (int i = 1; i <= diffs; i++)
        {
            await Task.Delay(interval).ConfigureAwait(false);
            link = await chain.TakeLinkAsync(Path.Combine(dir, $"{i}.diff"), full: false, last: i == diffs).ConfigureAwait(false);
            paths.Add(link.Path);
            PageStreamSummary diff = link.Summary;
            Console.WriteLine($"diff {i}: {diff.DataPages + diff.ZeroPages:N0} pages ({diff.ZeroPages:N0} zero), {diff.Bytes / 1024.0:F0} KiB " +
                $"= {100.0 * diff.Bytes / full.Summary.Bytes:F1}% of the full snapshot; the guest changed {link.GuestChanged:N0} of its pages; " +
                $"a resident-page (mincore) diff would hold {link.Resident:N0}; {link.Timing()}");
            Console.WriteLine($"  dirty-rate consumer: {link.DirtyRate.PagesDirtied:N0} pages in {link.DirtyRate.Interval.TotalMilliseconds:F0} ms = {link.DirtyRate.PagesPerSecond:N0} pages/s" +
                (link.DirtyRate.VcpuPagesPerSecond.Count == 0 ? "" : "; by vCPU (ring entries): " + string.Join(", ", link.DirtyRate.VcpuPagesPerSecond.Select((r, v) => $"vCPU {v} {r:N0} pages/s"))));
        }

        // The last link's state as one full snapshot: base plus diffs must equal it, byte for byte. With write
        // protection the guest ran on, so the state is the copy taken in the last pause (outside the measured pause).
        string lastFull = Path.Combine(dir, "last.full");
        await chain.WriteLastStateAsync(lastFull).ConfigureAwait(false);
        ulong? difference = await WithStreamsAsync(paths, async links =>
        {
            await using FileStream fullStream = File.OpenRead(lastFull);
            return await SnapshotChain.FindFirstDifferenceAsync(links, fullStream, vm.Memory.Size, CancellationToken.None).ConfigureAwait(false);
        }).ConfigureAwait(false);
        Console.WriteLine(difference is null
            ? $"equivalence: base + {diffs} diffs = the full snapshot of the last state, byte for byte"
            : $"equivalence: FAILED, the chain differs from the full snapshot at guest-physical 0x{difference:x}");

        // A new VM from the chain: it resumes where the last link paused and must keep the guest's invariant.
        vm.PauseVcpu();
        using var restored = new DestinationVm(options, kvm: true);
        PageStreamSummary applied = await WithStreamsAsync(paths, links => SnapshotChain.RestoreAsync(links, restored.Memory, memoryStartsZeroed: true, CancellationToken.None).AsTask()).ConfigureAwait(false);
        bool resumed = restored.Resume(applied, guest);
        long passes = resumed ? restored.RunThenPause(passes: 3, TimeSpan.FromSeconds(10)) : 0;
        string? broken = guest.CheckInvariant(restored.Memory);
        Console.WriteLine(resumed
            ? $"restore: {paths.Count} links applied, the guest resumed in a new VM and made {passes} passes; invariant {(broken is null ? "ok" : "BROKEN: " + broken)}"
            : "restore: the chain carried no vCPU state; nothing resumed");
        return difference is null && resumed && broken is null ? 0 : 1;
    }

    /// <summary>One harvest round, published to the consumers and committed; returns what the chain's consumer took.</summary>
    internal static List<DirtyRun> TakeRound(SourceVm vm, DirtyConsumerSet consumers, DirtyConsumer chainConsumer)
    {
        using (HarvestRound round = vm.Harvester.RunRound(null, CancellationToken.None))
        {
            consumers.Commit(round);
        }

        var sink = new RunList();
        chainConsumer.TakeChanges(ref sink);
        return sink.Runs;
    }

    internal static Dictionary<string, ReadOnlyMemory<byte>> States(SourceVm vm)
    {
        var states = new Dictionary<string, ReadOnlyMemory<byte>>(StringComparer.Ordinal);
        foreach ((string name, byte[] state) in vm.SaveState())
        {
            states[name] = state;
        }

        return states;
    }

    internal static async Task<PageStreamSummary> WriteAsync(string path, Func<Stream, ValueTask<PageStreamSummary>> write)
    {
        await using FileStream stream = File.Create(path);
        return await write(stream).ConfigureAwait(false);
    }

    internal static async Task<T> WithStreamsAsync<T>(List<string> paths, Func<Stream[], Task<T>> use)
    {
        var streams = new Stream[paths.Count];
        try
        {
            for (int i = 0; i < paths.Count; i++)
            {
                streams[i] = File.OpenRead(paths[i]);
            }

            return await use(streams).ConfigureAwait(false);
        }
        finally
        {
            foreach (Stream? stream in streams)
            {
                if (stream is not null)
                {
                    await stream.DisposeAsync().ConfigureAwait(false);
                }
            }
        }
    }

    /// <summary>A sink that keeps the runs.</summary>
    internal struct RunList() : IDirtyRunSink
    {
        public List<DirtyRun> Runs { get; } = [];

        public readonly bool TryAccept(DirtyRun run)
        {
            Runs.Add(run);
            return true;
        }
    }
}
