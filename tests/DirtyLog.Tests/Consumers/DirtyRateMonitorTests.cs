// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Bitmaps;
using DirtyLog.Consumers;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Consumers;

/// <summary>The dirty-rate monitor as a third consumer: its rates from the published rounds, with a clock the test moves.</summary>
[TestFixture]
[Category("Unit")]
public class DirtyRateMonitorTests
{
    [Test]
    public void TheRateIsTheDistinctPagesPublishedPerSecondAndTakesNothingFromTheOtherConsumers()
    {
        using var set = new DirtyConsumerSet(40);
        using DirtyConsumer migration = set.Register("migration");
        var clock = new ManualClock();
        using var monitor = new DirtyRateMonitor(set, time: clock);

        set.Publish([new DirtyRun(0, 100)]);
        set.Publish([new DirtyRun(50, 100), new DirtyRun(1000, 50)]); // 50 pages again: counted once
        clock.Advance(TimeSpan.FromSeconds(2));
        DirtyRateSample first = monitor.Sample();
        set.Publish([new DirtyRun(0, 10)]);
        clock.Advance(TimeSpan.FromMilliseconds(500));
        DirtyRateSample second = monitor.Sample();
        DirtyRateSample idle = monitor.Sample();

        var sink = new RunCollector();
        migration.TakeChanges(ref sink);
        Assert.Multiple(() =>
        {
            Assert.That(first.PagesDirtied, Is.EqualTo(200UL));
            Assert.That(first.Interval, Is.EqualTo(TimeSpan.FromSeconds(2)));
            Assert.That(first.PagesPerSecond, Is.EqualTo(100.0));
            Assert.That(second.PagesDirtied, Is.EqualTo(10UL), "only what came since the previous sample");
            Assert.That(second.PagesPerSecond, Is.EqualTo(20.0));
            Assert.That(idle.PagesPerSecond, Is.Zero, "no time passed");
            Assert.That(first.VcpuPagesPerSecond, Is.Empty, "no rings given");
            Assert.That(sink.Runs, Is.EqualTo(new[] { new DirtyRun(0, 150), new DirtyRun(1000, 50) }), "the migration's pages are all still its own");
        });
    }

    [Test]
    public void WithDirtyRingsEachVcpusRateComesWithTheSameInterval()
    {
        const ulong MiB = 1UL << 20;
        using var vm = new EmulatedKvmVm(64 * MiB, vcpus: 2, ringEntries: 4096);
        vm.AddSlot(0, 0, 64 * MiB);
        using var tracker = new KvmDirtyRingTracker(vm);
        tracker.StartTracking();
        var clock = new ManualClock();
        using var set = new DirtyConsumerSet(40);
        using var monitor = new DirtyRateMonitor(set, new VcpuDirtyRates(tracker, clock), clock);

        vm.Vcpus[0].WritePages(firstPage: 0, pages: 30);
        vm.Vcpus[1].WritePages(firstPage: 100, pages: 90);
        tracker.Reap();
        set.Publish([new DirtyRun(0, 30), new DirtyRun(100, 90)]); // the round a harvester would publish
        clock.Advance(TimeSpan.FromSeconds(3));
        DirtyRateSample sample = monitor.Sample();

        Assert.Multiple(() =>
        {
            Assert.That(sample.PagesDirtied, Is.EqualTo(120UL));
            Assert.That(sample.PagesPerSecond, Is.EqualTo(40.0));
            Assert.That(sample.VcpuPagesPerSecond, Is.EqualTo(new[] { 10.0, 30.0 }));
        });
    }

    [Test]
    public void BadInputIsRefused()
    {
        Assert.That(() => new DirtyRateMonitor(null!), Throws.ArgumentNullException);
        var set = new DirtyConsumerSet(40);
        var monitor = new DirtyRateMonitor(set);
        set.Dispose();
        Assert.That(() => monitor.Sample(), Throws.TypeOf<ObjectDisposedException>(), "its set is gone");
    }
}
