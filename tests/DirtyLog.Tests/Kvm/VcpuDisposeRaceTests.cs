// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm;

/// <summary>
/// The vCPU's mappings (<c>kvm_run</c>, the dirty ring) disposed while other threads still use them, as a reaper and a
/// migration thread do: every use either completes on live memory or throws <see cref="ObjectDisposedException"/>.
/// </summary>
[TestFixture]
public class VcpuDisposeRaceTests : KvmFixture
{
    [Test]
    public void RingHarvestsAndKicksRacingTheVcpusDisposalNeverTouchUnmappedMemory([Values(1, 2, 3)] int seed)
    {
        var random = new Random(seed);
        for (int trial = 0; trial < 20; trial++)
        {
            using var guest = new TinyGuest(16UL << 20, dirtyRingEntries: 1024);
            KvmVcpu vcpu = guest.Vcpu;
            KvmDirtyRing ring = vcpu.DirtyRing!;
            using var start = new Barrier(3);
            int harvestsAfter = 0, kicksAfter = 0;
            var disposed = new ManualResetEventSlim();
            var reaper = new Thread(() =>
            {
                start.SignalAndWait();
                while (true)
                {
                    bool wasDisposed = disposed.IsSet;
                    try
                    {
                        ring.Harvest(static (_, _) => { });
                    }
                    catch (ObjectDisposedException)
                    {
                        return;
                    }

                    if (wasDisposed)
                    {
                        Interlocked.Increment(ref harvestsAfter);
                    }
                }
            }) { IsBackground = true };
            var kicker = new Thread(() =>
            {
                start.SignalAndWait();
                while (true)
                {
                    bool wasDisposed = disposed.IsSet;
                    try
                    {
                        vcpu.Kick();
                    }
                    catch (ObjectDisposedException)
                    {
                        return;
                    }

                    if (wasDisposed)
                    {
                        Interlocked.Increment(ref kicksAfter);
                    }
                }
            }) { IsBackground = true };
            reaper.Start();
            kicker.Start();
            start.SignalAndWait();
            Thread.SpinWait(random.Next(0, 200_000));
            vcpu.Dispose();
            disposed.Set();

            Assert.That(reaper.Join(TimeSpan.FromSeconds(10)) && kicker.Join(TimeSpan.FromSeconds(10)), Is.True, "a user of the disposed vCPU never stopped");
            Assert.That((harvestsAfter, kicksAfter), Is.EqualTo((0, 0)), $"trial {trial}: a use that started after Dispose returned succeeded");
        }
    }
}
