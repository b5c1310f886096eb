// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm.Emulated;

/// <summary>Per-vCPU dirty rates from the dirty rings of the emulated VM, with a clock the test moves.</summary>
[TestFixture]
[Category("Unit")]
public class VcpuDirtyRatesTests
{
    private const ulong MiB = 1UL << 20;

    [Test]
    public void EachVcpusRateIsThePagesItsRingReportedOverTheInterval()
    {
        using var vm = new EmulatedKvmVm(64 * MiB, vcpus: 2, ringEntries: 4096);
        vm.AddSlot(0, 0, 64 * MiB);
        using var tracker = new KvmDirtyRingTracker(vm);
        tracker.StartTracking();
        var clock = new ManualClock();
        var rates = new VcpuDirtyRates(tracker, clock);

        vm.Vcpus[0].WritePages(firstPage: 0, pages: 100);
        vm.Vcpus[1].WritePages(firstPage: 1000, pages: 300);
        tracker.Reap();
        clock.Advance(TimeSpan.FromSeconds(2));
        double[] first = rates.Sample();

        vm.Vcpus[1].WritePages(firstPage: 5000, pages: 40);
        tracker.Reap();
        clock.Advance(TimeSpan.FromMilliseconds(500));
        double[] second = rates.Sample();
        double[] idle = rates.Sample(); // no time passed

        Assert.Multiple(() =>
        {
            Assert.That(tracker.EntriesPerVcpu(), Is.EqualTo(new long[] { 100, 340 }));
            Assert.That(first, Is.EqualTo(new[] { 50.0, 150.0 }));
            Assert.That(second, Is.EqualTo(new[] { 0.0, 80.0 }), "only what came since the previous sample");
            Assert.That(idle, Is.EqualTo(new[] { 0.0, 0.0 }));
        });
    }

    [Test]
    public void ARateNeedsATracker() =>
        Assert.That(() => new VcpuDirtyRates(null!), Throws.ArgumentNullException);
}
