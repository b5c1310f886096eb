// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Consumers;
using DirtyLog.Harvesting;
using DirtyLog.Testing;
using DirtyLog.Mapping;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Documentation;

/// <summary>
/// The examples of the README and the articles, run and checked: each region between <c>// snippet: NAME</c> and
/// <c>// end of snippet</c> is the page's block line for line (<see cref="CodeBlockTests"/> compares them).
/// </summary>
[TestFixture]
[Category("Unit")]
public class ExampleSnippetTests
{
    [Test]
    public void TheBitmapExampleRunsAndHarvestsWhatItMarked()
    {
        // snippet: bitmap
        // A 1 TiB guest: 40-bit guest-physical addresses in 4 KiB pages (2^28 pages).
        using var dirty = new SparseDirtyBitmap(addressWidth: 40, pageSize: 4096);

        // Any number of threads may mark at once, lock-free.
        dirty.Mark(0x12345);                     // one page
        dirty.MarkRange(0x80000, 512);           // a 2 MiB range: one atomic per word, never per page
        ulong[] slotLog = new ulong[4096];       // a KVM_GET_DIRTY_LOG bitmap of a 1 GiB slot
        slotLog[3] = 0b1011;
        dirty.MergeBitmap(slotLog, firstPage: 0x40000, pageCount: 4096 * 64);

        // Harvest: read and clear, as maximal runs, into a caller's buffer (no allocation per call).
        List<DirtyRun> toSend = [];
        Span<DirtyRun> runs = stackalloc DirtyRun[256];
        HarvestResult result;
        do
        {
            result = dirty.Harvest(runs);
            foreach (DirtyRun run in runs[..(int)result.Runs])
            {
                toSend.Add(run);                 // pages run.FirstPage .. run.EndPage - 1
            }
        }
        while (!result.Completed); // a full buffer leaves the rest dirty for the next call
        // end of snippet

        Assert.That(toSend, Is.EqualTo(new[]
        {
            new DirtyRun(0x12345, 1),
            new DirtyRun(0x40000 + (3 * 64), 2),
            new DirtyRun(0x40000 + (3 * 64) + 3, 1),
            new DirtyRun(0x80000, 512),
        }));
    }

    [Test]
    public void TheFrontPageExampleSendsWhatItMarked()
    {
        List<DirtyRun> sent = [];
        void Send(DirtyRun run) => sent.Add(run);

        // snippet: front-page
        using var dirty = new SparseDirtyBitmap(addressWidth: 40);   // a 1 TiB guest in 4 KiB pages
        dirty.Mark(0x12345);                                          // from any thread, lock-free
        dirty.MarkRange(0x80000, 512);                                // a 2 MiB range
        Span<DirtyRun> runs = stackalloc DirtyRun[64];
        HarvestResult taken = dirty.Harvest(runs);                    // read and clear, as maximal runs
        foreach (DirtyRun run in runs[..(int)taken.Runs])             // (a full buffer leaves the rest for the next call)
        {
            Send(run);                                                // pages run.FirstPage .. run.EndPage - 1
        }
        // end of snippet

        Assert.Multiple(() =>
        {
            Assert.That(taken.Completed, Is.True);
            Assert.That(sent, Is.EqualTo(new[] { new DirtyRun(0x12345, 1), new DirtyRun(0x80000, 512) }));
            Assert.That(dirty.Count(), Is.Zero, "the harvest cleared what it returned");
        });
    }

    [Test]
    public void TheTrackerExampleRunsAndBothTrackersSeeTheWrite()
    {
        // snippet: trackers
        // An emulated IOMMU and a device with its own DMA logger (the real ports take /dev/iommu and a VFIO cdev).
        using var guest = new EmulatedGuestMemory(64UL << 20);
        var iommu = new EmulatedIommu(guest);
        uint ioas = iommu.AllocateIoas();
        EmulatedHwpt hwpt = iommu.AllocateHwpt(ioas, dirtyTracking: true);
        iommu.Map(ioas, iova: 0x1_0000_0000, guestAddress: 0, length: 16UL << 20);
        var nic = new EmulatedDmaDevice(hwpt, DeviceDirtyLogLimits.Mlx5);

        AddressRange[] mapped = [new AddressRange(0x1_0000_0000, 16UL << 20)];
        using var iommuTracker = new IommuTracker(hwpt);
        iommuTracker.SetMappedRanges(mapped);
        using var deviceTracker = new DeviceTracker(nic);
        deviceTracker.SetMappedRanges(mapped);     // planned against the device's limits before it starts
        iommuTracker.StartTracking();
        deviceTracker.StartTracking();

        nic.DmaWriteUInt64(0x1_0000_3000, 42);     // DMA: logged by the device and by the IOMMU's dirty bit

        using var iovaPages = new SparseDirtyBitmap(addressWidth: 48);
        deviceTracker.ReadDirty(mapped[0], iovaPages, DirtyReadMode.Clear);
        iommuTracker.ReadDirty(mapped[0], iovaPages, DirtyReadMode.NoClear);  // no-clear: what to do before an unmap
        // end of snippet

        Assert.Multiple(() =>
        {
            // The map used 2 MiB IOPTEs, so the IOMMU's bit covers the whole entry; the device marked one page of it.
            Assert.That(iovaPages.HarvestRuns(), Is.EqualTo(new[] { new DirtyRun(0x1_0000_0000 >> 12, 512) }));
            Assert.That(guest.ReadUInt64(0x3000), Is.EqualTo(42UL));
        });
    }

    [Test]
    public void TheCorrelatorExampleReportsEachWriteWhereItLanded()
    {
        // snippet: correlator
        using var guest = new EmulatedGuestMemory(64UL << 20);
        var iommu = new EmulatedIommu(guest);
        uint ioas = iommu.AllocateIoas();
        var nic = new EmulatedDmaDevice(iommu.AllocateHwpt(ioas, dirtyTracking: false), DeviceDirtyLogLimits.Mlx5);

        using var dirty = new SparseDirtyBitmap(addressWidth: 40);   // guest-physical pages, shared by every tracker
        IoAddressSpace space = new Correlator(dirty).AddAddressSpace(ioas, new EmulatedIoMapBackend(iommu, ioas));
        using var tracker = new DeviceTracker(nic);
        space.Attach(tracker);

        space.Map(iova: 0x1_0000_0000, guestAddress: 0x20_0000, length: 2UL << 20);
        tracker.StartTracking();
        nic.DmaWriteUInt64(0x1_0000_1000, 7);                              // lands in guest page 0x201
        space.Remap(0x1_0000_0000, 2UL << 20, newGuestAddress: 0x60_0000); // synced with the old mapping first
        nic.DmaWriteUInt64(0x1_0000_1000, 8);                              // same IOVA, now guest page 0x601
        space.ReadDirty(tracker, DirtyReadMode.Clear);                     // a harvest round
        // dirty holds pages 0x201 and 0x601: each write where it landed, none where it did not
        // end of snippet
        var pages = new HashSet<ulong>();
        dirty.HarvestInto(pages);
        Assert.That(pages, Is.EquivalentTo(new ulong[] { 0x201, 0x601 }));
        nic.Dispose();
    }

    [Test]
    public void TheConsumersExampleGivesEachConsumerTheRound()
    {
        using var shared = new SparseDirtyBitmap(40);
        using var tracker = new EmulatedTracker("vcpus", new AddressRange(0, 1UL << 30));
        using var harvester = new ParallelHarvester(shared);
        harvester.Add(tracker, TrackerFaultPolicy.FailRound);
        harvester.StartTracking();
        tracker.Write(0x5000);

        // snippet: consumers
        using var consumers = new DirtyConsumerSet(addressWidth: 40);
        using DirtyConsumer migration = consumers.Register("migration");
        using DirtyConsumer snapshots = consumers.Register("snapshots"); // register before the full base snapshot

        using (HarvestRound round = harvester.RunRound(deadline: null, CancellationToken.None))
        {
            consumers.Commit(round); // every consumer has the pages; the shared bitmap lets them go
        }

        var sink = new RunListSink(); // any IDirtyRunSink
        snapshots.TakeChanges(ref sink); // what was published since its last take; the migration's pages stay its own
        // end of snippet

        Assert.Multiple(() =>
        {
            Assert.That(sink.Runs, Is.EqualTo(new[] { new DirtyRun(5, 1) }));
            Assert.That(migration.PendingPages, Is.EqualTo(1));
            Assert.That(shared.Count(), Is.Zero);
        });
    }

    /// <summary>The consumers example's sink: keeps the runs.</summary>
    private struct RunListSink() : IDirtyRunSink
    {
        public List<DirtyRun> Runs { get; } = [];

        public readonly bool TryAccept(DirtyRun run)
        {
            Runs.Add(run);
            return true;
        }
    }
}
