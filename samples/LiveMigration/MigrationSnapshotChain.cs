// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Consumers;
using DirtyLog.Migration;
using DirtyLog.Snapshots;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// A snapshot chain of the source kept while it migrates, from the same trackers: a base taken in a short pause before
/// the migration, then every round the migration sends published to the chain's consumer as well, and at the
/// switch-over (the source paused for good) one diff of all of it. The chain must equal a full snapshot of the
/// switch-over state, which the destination resumed from: the migration took nothing from the snapshots, nor they from it.
/// </summary>
internal sealed class MigrationSnapshotChain : IDisposable
{
    private readonly string _directory;
    private readonly DirtyConsumerSet _consumers = new(40);
    private readonly DirtyConsumer _chain;
    private readonly SnapshotChainWriter _writer;
    private readonly List<string> _links = [];

    private MigrationSnapshotChain(SourceVm vm, string directory)
    {
        _directory = directory;
        _chain = _consumers.Register("snapshots");
        _writer = new SnapshotChainWriter(vm.Memory);
    }

    /// <summary>The consumers the migration publishes its rounds to.</summary>
    public DirtyConsumerSet Consumers => _consumers;

    /// <summary>Starts tracking (the migration's start is then a no-op for it) and writes the base in a pause of the vCPU.</summary>
    public static async Task<MigrationSnapshotChain> BeginAsync(SourceVm vm, string directory)
    {
        Directory.CreateDirectory(directory);
        var chain = new MigrationSnapshotChain(vm, directory);
        vm.BeginTracking();
        vm.PauseVcpu();
        SnapshotDemo.TakeRound(vm, chain._consumers, chain._chain); // the base holds every page: drop what it reported
        string path = Path.Combine(directory, "0.full");
        await SnapshotDemo.WriteAsync(path, stream => chain._writer.WriteFullAsync(stream, SnapshotDemo.States(vm), CancellationToken.None)).ConfigureAwait(false);
        vm.ResumeVcpu();
        chain._links.Add(path);
        return chain;
    }

    /// <summary>
    /// After the switch-over: one diff of everything the migration sent, checked against a full snapshot of the paused
    /// source, then restored into a third VM that must resume and keep the guest's invariant.
    /// </summary>
    /// <returns>Whether the chain equals the switch-over state, byte for byte, and its restored guest runs with its invariant intact.</returns>
    public async Task<bool> FinishAsync(SourceVm vm, MigrationOptions options)
    {
        var sink = new SnapshotDemo.RunList();
        _chain.TakeChanges(ref sink);
        string path = Path.Combine(_directory, "1.diff");
        PageStreamSummary diff = await SnapshotDemo.WriteAsync(path, stream => _writer.WriteDiffAsync(stream, sink.Runs, SnapshotDemo.States(vm), CancellationToken.None)).ConfigureAwait(false);
        _links.Add(path);
        string full = Path.Combine(_directory, "switch-over.full");
        await SnapshotDemo.WriteAsync(full, stream => new SnapshotChainWriter(vm.Memory).WriteFullAsync(stream, SnapshotDemo.States(vm), CancellationToken.None)).ConfigureAwait(false);
        ulong? difference = await SnapshotDemo.WithStreamsAsync(_links, async links =>
        {
            await using FileStream fullStream = File.OpenRead(full);
            return await SnapshotChain.FindFirstDifferenceAsync(links, fullStream, vm.Memory.Size, CancellationToken.None).ConfigureAwait(false);
        }).ConfigureAwait(false);
        Console.WriteLine(difference is null
            ? $"snapshots: base + one diff of {diff.DataPages + diff.ZeroPages:N0} pages (every page the migration's rounds carried) = the switch-over state, byte for byte"
            : $"snapshots: FAILED, the chain differs from the switch-over state at guest-physical 0x{difference:x}");

        // A third VM from the chain: it resumes at the switch-over state and must keep the guest's invariant.
        using var restored = new DestinationVm(options, kvm: true);
        PageStreamSummary applied = await SnapshotDemo.WithStreamsAsync(_links, links => SnapshotChain.RestoreAsync(links, restored.Memory, memoryStartsZeroed: true, CancellationToken.None).AsTask()).ConfigureAwait(false);
        bool resumed = restored.Resume(applied, vm.Guest);
        long passes = resumed ? restored.RunThenPause(passes: 2, TimeSpan.FromSeconds(10)) : 0;
        string? broken = vm.Guest!.CheckInvariant(restored.Memory);
        Console.WriteLine(resumed
            ? $"snapshots: the chain restored into a third VM, which resumed and made {passes} passes; invariant {(broken is null ? "ok" : "BROKEN: " + broken)}"
            : "snapshots: FAILED, the chain carried no vCPU state; nothing resumed");
        return difference is null && resumed && passes >= 2 && broken is null;
    }

    public void Dispose()
    {
        _chain.Dispose();
        _consumers.Dispose();
    }
}
