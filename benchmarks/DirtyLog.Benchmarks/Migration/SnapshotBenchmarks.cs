// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Native;
using DirtyLog.Snapshots;

namespace DirtyLog.Benchmarks.Migration;

/// <summary>
/// What a snapshot's pause costs when the pause covers the copy, for a 256 MiB guest with half its pages resident
/// (written once) and 1% of its pages dirtied since the previous snapshot, scattered (single pages) or clustered (runs
/// of 64 pages): the full snapshot (the baseline), a resident-page snapshot (every resident page, what <c>mincore</c>
/// offers without dirty tracking) and the diffs of the dirty pages, each written as a page stream to a sink that
/// discards it (the copy and checksums, not the disk).
/// Each returns the bytes written (deterministic; the performance guide gives them). Against them, the pause of the other choice:
/// the link's pages write-protected (<see cref="CopyBeforeWriteGuard"/>) and written after resume, for the full
/// snapshot and the diff (each returns the pages protected); and that write itself, after resume, with nothing writing
/// meanwhile (the guard's own cost over the plain write: a copy into its shadow and one unprotect per chunk).
/// </summary>
[InvocationCount(1)]
public class SnapshotBenchmarks
{
    private const ulong GuestBytes = 256UL << 20;
    private const ulong Pages = GuestBytes / 4096;

    private AnonymousMapping _guest = null!;
    private SnapshotChainWriter _writer = null!;
    private DirtyRun[] _resident = [];
    private DirtyRun[] _dirty = [];
    private DirtyRun[] _clustered = [];
    private CopyBeforeWriteGuard _guard = null!;

    [GlobalSetup]
    public void Setup()
    {
        _guest = new AnonymousMapping(GuestBytes);
        var memory = new GuestMemoryView(_guest.Address, GuestBytes);
        var random = new XorShift(17);
        var resident = new List<DirtyRun>();
        for (ulong page = 0; page < Pages; page += 2)
        {
            // Every other page resident: written once with data.
            BitConverter.TryWriteBytes(memory.Slice(page * 4096, 8), random.Next() | 1);
            resident.Add(new DirtyRun(page, 1));
        }

        var dirty = new SortedSet<ulong>();
        while ((ulong)dirty.Count < Pages / 100)
        {
            dirty.Add(random.Below(Pages / 2) * 2);
        }

        _resident = [.. resident];
        _dirty = [.. Runs(dirty)];
        var clustered = new List<DirtyRun>();
        for (ulong first = 0; clustered.Count < (int)(Pages / 100 / 64); first += 6400)
        {
            clustered.Add(new DirtyRun(first, 64));
        }

        _clustered = [.. clustered];
        _writer = new SnapshotChainWriter(memory);
        _writer.WriteFullAsync(Stream.Null, null, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        _guard = new CopyBeforeWriteGuard(memory);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _guard.Dispose();
        _guest.Dispose();
    }

    /// <summary>The link protected by the benchmark before is written (after "resume"), outside the measured time.</summary>
    [IterationCleanup(Targets = [nameof(FullSnapshotProtectPause), nameof(DirtyPageDiffProtectPause), nameof(ClusteredDiffProtectPause)])]
    public void WriteProtectedLink() => _writer.WriteProtectedAsync(Stream.Null, _guard, null, CancellationToken.None).AsTask().GetAwaiter().GetResult();

    /// <summary>The diff protected before the write after resume is measured.</summary>
    [IterationSetup(Target = nameof(DirtyPageDiffWrittenAfterResume))]
    public void ProtectDiff() => _guard.Protect(_dirty);

    /// <summary>All of memory protected before the full snapshot's write after resume is measured.</summary>
    [IterationSetup(Target = nameof(FullSnapshotWrittenAfterResume))]
    public void ProtectAll() => _guard.ProtectAll();

    /// <summary>The clustered diff protected before the write after resume is measured.</summary>
    [IterationSetup(Target = nameof(ClusteredDiffWrittenAfterResume))]
    public void ProtectClusteredDiff() => _guard.Protect(_clustered);

    [Benchmark(Baseline = true)]
    public long FullSnapshot() => _writer.WriteFullAsync(Stream.Null, null, CancellationToken.None).AsTask().GetAwaiter().GetResult().Bytes;

    [Benchmark]
    public long ResidentPageSnapshot() => _writer.WriteDiffAsync(Stream.Null, _resident, null, CancellationToken.None).AsTask().GetAwaiter().GetResult().Bytes;

    [Benchmark]
    public long DirtyPageDiff() => _writer.WriteDiffAsync(Stream.Null, _dirty, null, CancellationToken.None).AsTask().GetAwaiter().GetResult().Bytes;

    [Benchmark]
    public long ClusteredDiff() => _writer.WriteDiffAsync(Stream.Null, _clustered, null, CancellationToken.None).AsTask().GetAwaiter().GetResult().Bytes;

    [Benchmark]
    public ulong FullSnapshotProtectPause()
    {
        _guard.ProtectAll();
        return Pages;
    }

    [Benchmark]
    public ulong DirtyPageDiffProtectPause()
    {
        _guard.Protect(_dirty);
        return (ulong)_dirty.Length;
    }

    [Benchmark]
    public ulong ClusteredDiffProtectPause()
    {
        _guard.Protect(_clustered);
        return (ulong)_clustered.Length;
    }

    [Benchmark]
    public long FullSnapshotWrittenAfterResume() => _writer.WriteProtectedAsync(Stream.Null, _guard, null, CancellationToken.None).AsTask().GetAwaiter().GetResult().Bytes;

    [Benchmark]
    public long DirtyPageDiffWrittenAfterResume() => _writer.WriteProtectedAsync(Stream.Null, _guard, null, CancellationToken.None).AsTask().GetAwaiter().GetResult().Bytes;

    [Benchmark]
    public long ClusteredDiffWrittenAfterResume() => _writer.WriteProtectedAsync(Stream.Null, _guard, null, CancellationToken.None).AsTask().GetAwaiter().GetResult().Bytes;

    private static IEnumerable<DirtyRun> Runs(SortedSet<ulong> pages)
    {
        foreach (ulong page in pages)
        {
            yield return new DirtyRun(page, 1);
        }
    }
}
