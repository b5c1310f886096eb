// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using DirtyLog.Memory;
using DirtyLog.Samples.LiveMigration;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Samples;

/// <summary>
/// The sample's boot-sector guest on the real /dev/kvm: it runs, progresses pass after pass, stops at the run loop's
/// request with its invariant holding, and carries on from a saved vCPU state on another VM; its sector is the one
/// its source assembles to.
/// </summary>
[TestFixture]
[NonParallelizable]
public class BootGuestTests : KvmFixture
{
    private const ulong MiB = 1UL << 20;

    [Test]
    public void TheGuestRunsStopsWithItsInvariantAndResumesOnAnotherVmFromItsSavedState()
    {
        var guest = new BootGuest(firstPage: 256, pages: 1024, paceCycles: 0);
        using var source = new SampleVmm(8 * MiB);
        source.SetSlot(0, 0, 8 * MiB, false);
        source.Boot(guest.Sector());
        var memory = new GuestMemoryView(source.Memory, 8 * MiB);

        RunUntilPasses(source, 3);
        Assert.That(guest.CheckInvariant(memory), Is.Null, "stopped mid-pass, the invariant holds");
        Assert.That(source.SerialBytes, Is.GreaterThanOrEqualTo(3));

        // The same memory and vCPU state on another VM: the guest carries on from where it stopped.
        byte[] state = source.SaveVcpuState();
        using var destination = new SampleVmm(8 * MiB);
        destination.SetSlot(0, 0, 8 * MiB, false);
        var copy = new GuestMemoryView(destination.Memory, 8 * MiB);
        memory.Slice(0, (int)(8 * MiB)).CopyTo(copy.Slice(0, (int)(8 * MiB)));
        destination.RestoreVcpuState(state);
        byte[] atResume = guest.FirstBytes(copy);
        RunUntilPasses(destination, 1);
        Assert.Multiple(() =>
        {
            Assert.That(guest.CheckInvariant(copy), Is.Null, "the invariant holds on the destination");
            Assert.That(guest.PagesChangedSince(atResume, copy), Is.GreaterThan(0UL), "the guest progressed there");
        });
    }

    [Test]
    public void AThrottledVcpuRunsItsShareOfTheTimeAndAPauseEndsItsSleepAtOnce()
    {
        var guest = new BootGuest(firstPage: 256, pages: 256, paceCycles: 0);
        using var vmm = new SampleVmm(4 * MiB);
        vmm.SetSlot(0, 0, 4 * MiB, false);
        vmm.Boot(guest.Sector());
        using var pause = new CancellationTokenSource();
        (Thread vcpu, Func<Exception?> failure) = StartVcpu(vmm, pause.Token);
        Assert.That(SpinWait.SpinUntil(() => vmm.SerialBytes >= 3, TimeSpan.FromSeconds(60)), Is.True, "the guest runs");

        // Unthrottled and kept out three quarters of the time, in turn (the machine's load changes less between
        // neighbours): passes follow the time in the guest.
        long free = 0, throttled = 0;
        for (int turn = 0; turn < 3; turn++)
        {
            vmm.Throttle = 0;
            free += PassesIn(vmm, TimeSpan.FromMilliseconds(300));
            vmm.Throttle = 0.75;
            throttled += PassesIn(vmm, TimeSpan.FromMilliseconds(300));
        }

        // At 99% the vCPU sleeps about 99 times what it ran (half a second or more): a pause must not wait for it.
        vmm.Throttle = 0.99;
        Thread.Sleep(200);
        long asleep = vmm.SerialBytes;
        Thread.Sleep(100);
        long pausedAt = Stopwatch.GetTimestamp();
        pause.Cancel();
        Assert.That(vcpu.Join(TimeSpan.FromSeconds(30)), Is.True);
        TimeSpan stopped = Stopwatch.GetElapsedTime(pausedAt);
        Assert.Multiple(() =>
        {
            Assert.That(failure(), Is.Null);
            Assert.That(free, Is.GreaterThan(30), "enough passes to judge by");
            Assert.That((double)throttled / free, Is.InRange(0.05, 0.5), $"{throttled} passes throttled to 75% against {free} free");
            Assert.That(vmm.SerialBytes - asleep, Is.LessThanOrEqualTo(1), "at 99% the vCPU made (almost) no pass in 100 ms");
            Assert.That(stopped, Is.LessThan(TimeSpan.FromMilliseconds(400)), "the pause woke the throttled vCPU");
            Assert.That(guest.CheckInvariant(new GuestMemoryView(vmm.Memory, 4 * MiB)), Is.Null);
        });
    }

    private static long PassesIn(SampleVmm vmm, TimeSpan time)
    {
        long before = vmm.SerialBytes;
        Thread.Sleep(time);
        return vmm.SerialBytes - before;
    }

    [Test]
    public void TheInvariantCatchesALostPage()
    {
        var guest = new BootGuest(firstPage: 256, pages: 64, paceCycles: 0);
        using var vmm = new SampleVmm(2 * MiB);
        var memory = new GuestMemoryView(vmm.Memory, 2 * MiB);
        for (ulong p = 0; p < 64; p++)
        {
            memory.Slice((256 + p) * 4096, 1)[0] = (byte)(p < 10 ? 6 : 5);
        }

        Assert.That(guest.CheckInvariant(memory), Is.Null);
        memory.Slice((256 + 40) * 4096, 1)[0] = 4; // a page that missed its last increment
        Assert.That(guest.CheckInvariant(memory), Does.Contain("page 296"));
    }

    [Test]
    public void TheEmbeddedSectorIsWhatItsSourceAssemblesTo()
    {
        Assume.That(File.Exists("/usr/bin/as") && File.Exists("/usr/bin/ld"), "GNU as and ld are not installed");
        string dir = Path.Combine(Path.GetTempPath(), $"dirtylog-boot-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string source = Path.Combine(Repository.Root, "samples", "LiveMigration", "Guest", "boot.S");
            Run("as", "--32", "-o", Path.Combine(dir, "boot.o"), source);
            Run("ld", "-m", "elf_i386", "-Ttext", "0x7c00", "--oformat", "binary", "-o", Path.Combine(dir, "boot.bin"), Path.Combine(dir, "boot.o"));
            Assert.That(File.ReadAllBytes(Path.Combine(dir, "boot.bin")),
                Is.EqualTo(File.ReadAllBytes(Path.Combine(Repository.Root, "samples", "LiveMigration", "Guest", "boot.bin"))));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static void Run(string tool, params string[] arguments)
    {
        using Process process = Process.Start(new ProcessStartInfo(tool, arguments) { RedirectStandardError = true })!;
        string error = process.StandardError.ReadToEnd();
        Assert.That(process.WaitForExit(60_000), Is.True);
        Assert.That(process.ExitCode, Is.Zero, error);
    }

    /// <summary>Runs the guest on a thread of its own until it has written <paramref name="passes"/> more serial bytes, then pauses it.</summary>
    private static void RunUntilPasses(SampleVmm vmm, int passes)
    {
        long target = vmm.SerialBytes + passes;
        using var pause = new CancellationTokenSource();
        (Thread vcpu, Func<Exception?> failure) = StartVcpu(vmm, pause.Token);
        Assert.That(SpinWait.SpinUntil(() => vmm.SerialBytes >= target || !vcpu.IsAlive, TimeSpan.FromSeconds(60)), Is.True, "the guest writes its passes");
        pause.Cancel();
        Assert.That(vcpu.Join(TimeSpan.FromSeconds(30)), Is.True, "the run loop stops at the guest's next exit");
        Assert.That(failure(), Is.Null);
    }

    /// <summary>Runs the guest on a thread of its own until <paramref name="pause"/>; the second item says how its run loop failed, if it did.</summary>
    private static (Thread Vcpu, Func<Exception?> Failure) StartVcpu(SampleVmm vmm, CancellationToken pause)
    {
        Exception? failure = null;
        var vcpu = new Thread(() =>
        {
            try
            {
                vmm.RunUntilPaused(pause);
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        vcpu.Start();
        return (vcpu, () => failure);
    }
}
