// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Consumers;
using DirtyLog.Harvesting;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Consumers;

[TestFixture]
[Category("Unit")]
public class DirtyConsumerSetTests
{
    [Test]
    public void EachConsumerTakesEveryPublishedPageWithoutTakingThemFromTheOthers()
    {
        using var set = new DirtyConsumerSet(40);
        using DirtyConsumer migration = set.Register("migration");
        using DirtyConsumer snapshots = set.Register("snapshots");
        set.Publish([new DirtyRun(10, 3), new DirtyRun(100, 1)]);

        Assert.That(Take(migration), Is.EqualTo(new[] { new DirtyRun(10, 3), new DirtyRun(100, 1) }));
        set.Publish([new DirtyRun(11, 1), new DirtyRun(500, 2)]);
        Assert.Multiple(() =>
        {
            Assert.That(Take(migration), Is.EqualTo(new[] { new DirtyRun(11, 1), new DirtyRun(500, 2) }), "only what came since");
            Assert.That(Take(snapshots), Is.EqualTo(new[] { new DirtyRun(10, 3), new DirtyRun(100, 1), new DirtyRun(500, 2) }),
                "both publications, merged: the migration's takes took nothing from it");
            Assert.That(Take(migration), Is.Empty);
            Assert.That(migration.Epoch, Is.EqualTo(3));
            Assert.That(snapshots.Epoch, Is.EqualTo(1));
            Assert.That(set.Publications, Is.EqualTo(2));
        });
    }

    [Test]
    public void AConsumerSeesThePublicationsFromItsRegistrationOn()
    {
        using var set = new DirtyConsumerSet(40);
        using DirtyConsumer first = set.Register("first");
        set.Publish([new DirtyRun(1, 1)]);
        using DirtyConsumer late = set.Register("late");
        set.Publish([new DirtyRun(2, 1)]);
        Assert.Multiple(() =>
        {
            Assert.That(Take(first), Is.EqualTo(new[] { new DirtyRun(1, 2) }));
            Assert.That(Take(late), Is.EqualTo(new[] { new DirtyRun(2, 1) }));
        });
    }

    [Test]
    public void ASinkThatStopsEarlyLeavesTheRestAndTheEpochWhereTheyWere()
    {
        using var set = new DirtyConsumerSet(40);
        using DirtyConsumer consumer = set.Register("c");
        set.Publish([new DirtyRun(1, 1), new DirtyRun(3, 1), new DirtyRun(5, 1)]);
        var sink = new RunCollector(limit: 1);
        HarvestResult partial = consumer.TakeChanges(ref sink);
        Assert.Multiple(() =>
        {
            Assert.That(partial.Completed, Is.False);
            Assert.That(sink.Runs, Is.EqualTo(new[] { new DirtyRun(1, 1) }));
            Assert.That(consumer.Epoch, Is.Zero);
            Assert.That(consumer.PendingPages, Is.EqualTo(2));
            Assert.That(Take(consumer), Is.EqualTo(new[] { new DirtyRun(3, 1), new DirtyRun(5, 1) }));
            Assert.That(consumer.Epoch, Is.EqualTo(1));
        });
    }

    [Test]
    public void PagesPutBackAreTakenAgainWithWhatCameSince()
    {
        using var set = new DirtyConsumerSet(40);
        using DirtyConsumer consumer = set.Register("snapshots");
        set.Publish([new DirtyRun(64, 64)]);
        List<DirtyRun> taken = Take(consumer);
        consumer.PutBack(taken.ToArray());
        set.Publish([new DirtyRun(128, 1)]);
        Assert.That(Take(consumer), Is.EqualTo(new[] { new DirtyRun(64, 65) }));
    }

    [Test]
    public void CommitPublishesAHarvestedRoundToEveryConsumerBeforeTheRoundLeavesTheSharedBitmap()
    {
        using var shared = new SparseDirtyBitmap(40);
        using var tracker = new EmulatedTracker("vcpus", new AddressRange(0, 64UL << 20));
        using var harvester = new ParallelHarvester(shared);
        harvester.Add(tracker, TrackerFaultPolicy.FailRound);
        harvester.StartTracking();
        using var set = new DirtyConsumerSet(40);
        using DirtyConsumer migration = set.Register("migration");
        using DirtyConsumer rate = set.Register("dirty rate");

        Assert.That(tracker.Write(5 * 4096UL), Is.True);
        Assert.That(tracker.Write(9 * 4096UL), Is.True);
        using (HarvestRound round = harvester.RunRound(null, CancellationToken.None))
        {
            set.Commit(round);
            Assert.That(round.IsCommitted, Is.True);
            Assert.That(() => set.Commit(round), Throws.InvalidOperationException, "a settled round has no runs to publish");
        }

        Assert.That(tracker.Write(6 * 4096UL), Is.True);
        using (HarvestRound round = harvester.RunRound(null, CancellationToken.None))
        {
            set.Commit(round);
        }

        Assert.Multiple(() =>
        {
            Assert.That(shared.Count(), Is.Zero, "committed rounds left the shared bitmap");
            Assert.That(Take(migration), Is.EqualTo(new[] { new DirtyRun(5, 2), new DirtyRun(9, 1) }));
            Assert.That(Take(rate), Is.EqualTo(new[] { new DirtyRun(5, 2), new DirtyRun(9, 1) }));
            Assert.That(set.Publications, Is.EqualTo(2));
        });
    }

    [Test]
    public void ADisposedConsumerLeavesTheSetAndRefusesItsCalls()
    {
        using var set = new DirtyConsumerSet(40);
        DirtyConsumer gone = set.Register("gone");
        using DirtyConsumer stays = set.Register("stays");
        gone.Dispose();
        set.Publish([new DirtyRun(7, 1)]);
        var sink = new RunCollector();
        Assert.Multiple(() =>
        {
            Assert.That(set.Consumers, Is.EqualTo(new[] { stays }));
            Assert.That(() => gone.TakeChanges(ref sink), Throws.TypeOf<ObjectDisposedException>().With.Message.Contains("gone"));
            Assert.That(gone.BytesInUse, Is.Zero);
            Assert.That(Take(stays), Is.EqualTo(new[] { new DirtyRun(7, 1) }));
            Assert.That(() => set.Register("stays"), Throws.ArgumentException.With.Message.Contains("registered already"));
            Assert.That(() => set.Register(""), Throws.ArgumentException);
            Assert.That(() => set.Publish([new DirtyRun(1UL << 28, 1)]), Throws.TypeOf<ArgumentOutOfRangeException>());
        });

        set.Dispose();
        Assert.Multiple(() =>
        {
            Assert.That(() => set.Register("after"), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => set.Publish([new DirtyRun(1, 1)]), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => stays.TakeChanges(ref sink), Throws.TypeOf<ObjectDisposedException>());
        });
    }

    [Test]
    public void APublicationWithARunPastThePageSpaceReachesNoConsumer()
    {
        using var set = new DirtyConsumerSet(40);
        using DirtyConsumer first = set.Register("first");
        using DirtyConsumer second = set.Register("second");
        Assert.That(() => set.Publish([new DirtyRun(5, 1), new DirtyRun((1UL << 28) - 1, 2)]),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Message.Contains("nothing was published"));
        Assert.That(() => set.Publish([new DirtyRun(ulong.MaxValue, 2)]), Throws.TypeOf<ArgumentOutOfRangeException>(), "a run that wraps");
        Assert.Multiple(() =>
        {
            Assert.That(first.PendingPages, Is.Zero);
            Assert.That(second.PendingPages, Is.Zero);
            Assert.That(set.Publications, Is.Zero);
        });
    }

    [Test]
    public void ABadGeometryIsRefusedWithTheBitmapsMessage() =>
        Assert.That(() => new DirtyConsumerSet(40, 1000), Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("pageSize"));

    private static List<DirtyRun> Take(DirtyConsumer consumer)
    {
        var sink = new RunCollector();
        consumer.TakeChanges(ref sink);
        return sink.Runs;
    }
}
