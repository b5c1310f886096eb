// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm;

/// <summary>The tiny guest on the real /dev/kvm: what it writes is exactly what the host-side replay of its generator says.</summary>
[TestFixture]
public class TinyGuestTests : KvmFixture
{
    [TestCase(1u, 1u)]
    [TestCase(7u, 1000u)]
    [TestCase(99u, 20000u)]
    public void TheGuestWritesTheIterationIntoExactlyTheReplayedPages(uint seed, uint writes)
    {
        using var guest = new TinyGuest(64UL << 20, seed);
        uint state = guest.State;
        guest.Write(writes, 0x1_0000_0000UL + 3);
        var expected = new HashSet<ulong>(TinyGuest.PagesWrittenBy(state, writes, guest.Pages));
        int mismatches = 0;
        for (ulong page = 2; page < guest.Pages; page++)
        {
            bool written = guest.Memory.ReadUInt64(page * 4096) == 0x1_0000_0000UL + 3;
            if (written != expected.Contains(page))
            {
                mismatches++;
            }
        }

        Assert.Multiple(() =>
        {
            Assert.That(mismatches, Is.Zero);
            Assert.That(guest.State, Is.Not.EqualTo(state), "the generator state moved on");
            Assert.That(guest.Memory.ReadUInt64(TinyGuest.CodeAddress), Is.Not.Zero, "the code page was not overwritten");
        });
    }

    [Test]
    public void SuccessiveRunsContinueTheSequence()
    {
        using var guest = new TinyGuest(64UL << 20, seed: 5);
        uint start = guest.State;
        guest.Write(100, 1);
        guest.Write(100, 2);
        ulong[] all = TinyGuest.PagesWrittenBy(start, 200, guest.Pages);
        Assert.That(guest.Memory.ReadUInt64(all[199] * 4096), Is.EqualTo(2UL));
    }

    [TestCase(2u, 1u, 100u)]
    [TestCase(5u, 1000u, 16u)]
    [TestCase(3u, 7u, 2000u)]
    public void TheStridedLoopWritesExactlyEveryStridethPage(uint first, uint stride, uint count)
    {
        using var guest = new TinyGuest(64UL << 20);
        uint state = guest.State;
        guest.WriteStrided(first, stride, count, 0xABCD_0000_0001UL);
        int mismatches = 0;
        for (ulong page = 2; page < guest.Pages; page++)
        {
            bool expected = page >= first && (page - first) % stride == 0 && (page - first) / stride < count;
            if ((guest.Memory.ReadUInt64(page * 4096) == 0xABCD_0000_0001UL) != expected)
            {
                mismatches++;
            }
        }

        Assert.Multiple(() =>
        {
            Assert.That(mismatches, Is.Zero);
            Assert.That(guest.State, Is.EqualTo(state), "the generator is untouched");
        });
    }

    [Test]
    public void AStridedRunPastTheSlotOrOntoTheCodeIsRefused()
    {
        using var guest = new TinyGuest(64UL << 20);
        Assert.Multiple(() =>
        {
            Assert.That(() => guest.WriteStrided(1, 1, 1, 0), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => guest.WriteStrided(2, 1, (uint)guest.Pages - 1, 0), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => guest.WriteStrided(2, 0, 1, 0), Throws.InstanceOf<ArgumentOutOfRangeException>());
        });
    }

    [Test]
    public void AKickFromAnotherThreadPausesAGuestInsideKvmRun()
    {
        // Four billion writes take far longer than the test: only a kick can end the run.
        using var guest = new TinyGuest(64UL << 20, seed: 11);
        uint start = guest.State;
        using var pause = new CancellationTokenSource();
        using var running = new ManualResetEventSlim();
        ulong completed = 0;
        Exception? failure = null;
        var vcpuThread = new Thread(() =>
        {
            try
            {
                running.Set();
                completed = guest.WriteUntilPaused(42, pause.Token);
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        vcpuThread.Start();
        Assert.That(running.Wait(TimeSpan.FromSeconds(10)), Is.True);
        ulong firstPage = TinyGuest.PagesWrittenBy(start, 1, guest.Pages)[0];
        Assert.That(SpinWait.SpinUntil(() => guest.Memory.ReadUInt64(firstPage * 4096) == 42, TimeSpan.FromSeconds(10)), Is.True, "the guest is running: its first write is in memory");
        var clock = Stopwatch.StartNew();
        pause.Cancel();
        bool joined = vcpuThread.Join(TimeSpan.FromSeconds(10));
        clock.Stop();

        Assert.Multiple(() =>
        {
            Assert.That(joined, Is.True, "the kicked vCPU returned");
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(2)), "the kick, not the end of four billion writes, ended the run");
            Assert.That(failure, Is.Null);
            Assert.That(completed, Is.GreaterThan(0UL).And.LessThan((ulong)uint.MaxValue));
        });
        TestContext.Out.WriteLine($"paused after {completed:N0} writes; kick to return {clock.Elapsed.TotalMilliseconds:F2} ms");

        // Every completed write is in memory; the guest resumes from where it was paused.
        ulong[] pages = TinyGuest.PagesWrittenBy(start, (uint)Math.Min(completed, 100_000), guest.Pages);
        Assert.That(Array.TrueForAll(pages, p => guest.Memory.ReadUInt64(p * 4096) == 42), Is.True);
        uint resumeState = guest.State;
        guest.Write(10, 43);
        Assert.That(guest.Memory.ReadUInt64(TinyGuest.PagesWrittenBy(resumeState, 10, guest.Pages)[9] * 4096), Is.EqualTo(43UL));
    }

    [Test]
    public void AKickBeforeTheRunStopsTheNextEntry()
    {
        using var guest = new TinyGuest(64UL << 20);
        using var pause = new CancellationTokenSource();
        pause.Cancel();
        Assert.That(guest.WriteUntilPaused(1, pause.Token), Is.Zero);

        // A kick while no run is in progress is consumed by the next run, which returns at once.
        guest.Vcpu.Kick();
        Assert.That(guest.Vcpu.Run(), Is.EqualTo(10u), "KVM_EXIT_INTR");
        guest.Write(5, 2); // and the vCPU runs normally afterwards
    }
}
