// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Consumers;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;
using DirtyLog.Snapshots;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// Takes the links of one snapshot chain of the running guest, in a pause that covers the copy or, with a
/// <see cref="CopyBeforeWriteGuard"/>, in a pause that covers only the protection, the link written after resume.
/// </summary>
/// <remarks>Not thread-safe: the demo's one thread takes the links in order.</remarks>
internal sealed class SnapshotRun(SourceVm vm, BootGuest guest, DirtyConsumerSet consumers, DirtyConsumer chainConsumer,
    DirtyRateMonitor rates, SnapshotChainWriter writer, CopyBeforeWriteGuard? guard)
{
    private byte[] _progress = [];  // the working set's first bytes at the previous link
    private (long Pages, long At) _freeFrom; // the guest's progress when it last ran unhindered (resumed, or its link written)
    private AnonymousMapping? _lastState; // with write protection: memory at the last link's protection, for the check

    /// <summary>Pauses the vCPU, takes the round, writes (or protects) the link, resumes unless it is the last link written in the pause.</summary>
    public async Task<LinkReport> TakeLinkAsync(string path, bool full, bool last)
    {
        long paused = Stopwatch.GetTimestamp();
        vm.PauseVcpu();
        List<DirtyRun> runs = SnapshotDemo.TakeRound(vm, consumers, chainConsumer);
        DirtyRateSample rate = rates.Sample(); // the same round, as the rate monitor sees it
        Dictionary<string, ReadOnlyMemory<byte>> states = SnapshotDemo.States(vm);
        PageStreamSummary? summary = null;
        if (guard is null)
        {
            summary = await SnapshotDemo.WriteAsync(path, stream => full
                ? writer.WriteFullAsync(stream, states, CancellationToken.None)
                : writer.WriteDiffAsync(stream, runs, states, CancellationToken.None)).ConfigureAwait(false);
        }
        else if (full)
        {
            guard.ProtectAll();
        }
        else
        {
            guard.Protect(runs);
        }

        double pauseMs = Stopwatch.GetElapsedTime(paused).TotalMilliseconds;

        // The demo's own bookkeeping, still in the pause but outside the measured time: progress and residency.
        long progress = vm.GuestPagesWritten;
        double freePace = _freeFrom.At == 0 ? 0 : (progress - _freeFrom.Pages) / Stopwatch.GetElapsedTime(_freeFrom.At, paused).TotalSeconds;
        ulong changed = full ? 0 : guest.PagesChangedSince(_progress, vm.Memory);
        ulong resident = vm.ResidentPages;
        _progress = guest.FirstBytes(vm.Memory);
        if (last && guard is not null)
        {
            _lastState = new AnonymousMapping(vm.Memory.Size);
            for (ulong offset = 0; offset < vm.Memory.Size; offset += 1UL << 30)
            {
                _lastState.Write(offset, vm.Memory.Slice(offset, (int)Math.Min(1UL << 30, vm.Memory.Size - offset)));
            }
        }

        if (guard is null)
        {
            if (!last)
            {
                Resume(progress);
            }

            return new LinkReport(path, summary!, changed, resident, rate, pauseMs, null, 0, 0, 0, freePace);
        }

        long copiedBefore = guard.PagesCopiedOnWrite, faultsBefore = guard.FaultsServed; // in the pause: every write after it is this link's
        Resume(progress);
        long writing = Stopwatch.GetTimestamp();
        try
        {
            summary = await SnapshotDemo.WriteAsync(path, stream => writer.WriteProtectedAsync(stream, guard, states, CancellationToken.None)).ConfigureAwait(false);
        }
        catch
        {
            chainConsumer.PutBack(runs.ToArray()); // the link failed: its pages go to the next one
            throw;
        }

        long written = Stopwatch.GetTimestamp();
        long progressWritten = vm.GuestPagesWritten;
        double writeSeconds = Stopwatch.GetElapsedTime(writing, written).TotalSeconds;
        _freeFrom = (progressWritten, written);
        return new LinkReport(path, summary, changed, resident, rate, pauseMs, writeSeconds * 1000, guard.FaultsServed - faultsBefore, guard.PagesCopiedOnWrite - copiedBefore,
            (progressWritten - progress) / Stopwatch.GetElapsedTime(_resumedAt, written).TotalSeconds, freePace);
    }

    /// <summary>A full snapshot of the last link's state: the paused memory, or the copy taken at its protection.</summary>
    public async Task WriteLastStateAsync(string path)
    {
        if (_lastState is null)
        {
            await SnapshotDemo.WriteAsync(path, stream => new SnapshotChainWriter(vm.Memory).WriteFullAsync(stream, SnapshotDemo.States(vm), CancellationToken.None)).ConfigureAwait(false);
            return;
        }

        try
        {
            var memory = new GuestMemoryView(_lastState.Address, _lastState.Length);
            await SnapshotDemo.WriteAsync(path, stream => new SnapshotChainWriter(memory).WriteFullAsync(stream, null, CancellationToken.None)).ConfigureAwait(false);
        }
        finally
        {
            _lastState.Dispose();
            _lastState = null;
        }
    }

    private long _resumedAt;

    private void Resume(long progress)
    {
        vm.ResumeVcpu();
        _resumedAt = Stopwatch.GetTimestamp();
        _freeFrom = (progress, _resumedAt);
    }
}
