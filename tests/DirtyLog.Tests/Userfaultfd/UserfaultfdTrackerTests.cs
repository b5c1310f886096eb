// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Tracking;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Userfaultfd;

/// <summary>
/// The userfaultfd tracker on the real kernel: writer threads of this process write round numbers into pages of
/// guest memory while the tracker is read in a loop; every page holding a round's number must have been reported
/// in that round. A tiny region buffer forces the kernel to stop early, so re-issuing from walk_end is exercised.
/// </summary>
[TestFixture]
[Category("Kernel")]
[Category("Userfaultfd")]
public class UserfaultfdTrackerTests
{
    private const ulong Bytes = 64UL << 20;
    private const ulong GuestBase = 1UL << 32;

    private static void RequireUffd()
    {
        try
        {
            UserfaultfdContext.CreateAsyncWriteProtect().Dispose();
        }
        catch (KernelException e)
        {
            Assume.That(false, $"userfaultfd with asynchronous write-protect is not available: {e.Message}");
        }
    }

    [TestCase(1, 2)]
    [TestCase(2, 2)]
    public void EveryPageWrittenByAThreadIsReportedInItsRound(int seed, int writers)
    {
        RequireUffd();
        using var memory = new AnonymousMapping(Bytes);
        using var tracker = new UserfaultfdTracker([new HostMemoryRegion(memory.Address, GuestBase, Bytes)]) { RegionBufferLength = 4 };
        tracker.StartTracking();
        using var reported = new SparseDirtyBitmap(48);
        using var start = new Barrier(writers + 1);
        int remaining = 0;
        const int Rounds = 10;
        var threads = new Thread[writers];
        for (int w = 0; w < writers; w++)
        {
            int id = w;
            threads[w] = new Thread(() =>
            {
                var random = new Random((seed * 10) + id);
                for (int round = 1; round <= Rounds; round++)
                {
                    if (!start.SignalAndWait(TimeSpan.FromMinutes(2)))
                    {
                        return;
                    }

                    for (int i = 0; i < 2000; i++)
                    {
                        ulong page = (ulong)random.Next((int)(Bytes / 4096));
                        memory.WriteUInt64((page * 4096) + (ulong)(8 * id), (ulong)round);
                    }

                    Interlocked.Decrement(ref remaining);
                }
            })
            { IsBackground = true };
            threads[w].Start();
        }

        var all = new AddressRange(GuestBase, Bytes);
        for (int round = 1; round <= Rounds; round++)
        {
            Volatile.Write(ref remaining, writers);
            Assert.That(start.SignalAndWait(TimeSpan.FromMinutes(2)), Is.True);
            var seen = new HashSet<ulong>();
            while (Volatile.Read(ref remaining) > 0)
            {
                tracker.ReadDirty(all, reported, DirtyReadMode.Clear);
                Collect(reported, seen);
            }

            tracker.ReadDirty(all, reported, DirtyReadMode.Clear);
            Collect(reported, seen);
            int missed = 0;
            for (ulong page = 0; page < Bytes / 4096; page++)
            {
                for (int id = 0; id < writers; id++)
                {
                    if (memory.ReadUInt64((page * 4096) + (ulong)(8 * id)) == (ulong)round && !seen.Contains((GuestBase / 4096) + page))
                    {
                        missed++;
                    }
                }
            }

            Assert.That(missed, Is.Zero, $"round {round}");
        }

        foreach (Thread t in threads)
        {
            Assert.That(t.Join(TimeSpan.FromMinutes(2)), Is.True);
        }

        TestContext.Out.WriteLine($"{tracker.Scans} scans, {tracker.Reissues} re-issued from walk_end");
        Assert.That(tracker.Reissues, Is.GreaterThan(0), "the tiny region buffer made the kernel stop early");
    }

    [Test]
    public void ANoClearReadLeavesThePagesForTheNextRead()
    {
        RequireUffd();
        using var memory = new AnonymousMapping(1UL << 20);
        using var tracker = new UserfaultfdTracker([new HostMemoryRegion(memory.Address, 0, 1UL << 20)]);
        tracker.StartTracking();
        memory.WriteUInt64(5 * 4096, 1);
        using var pages = new SparseDirtyBitmap(40);
        Assert.Multiple(() =>
        {
            Assert.That(tracker.ReadDirty(tracker.Coverage[0], pages, DirtyReadMode.NoClear), Is.EqualTo(1));
            Assert.That(tracker.ReadDirty(tracker.Coverage[0], pages, DirtyReadMode.Clear), Is.EqualTo(1));
            Assert.That(tracker.ReadDirty(tracker.Coverage[0], pages, DirtyReadMode.Clear), Is.Zero);
        });
    }

    [Test]
    public void AStartThatFailsOnALaterRegionLeavesNothingRegistered()
    {
        // The second region is not mapped: UFFDIO_REGISTER fails there after the first region was registered and
        // protected. The tracker must be left stopped with nothing behind: the first region can then be registered by
        // another tracker (a range registered with a live userfaultfd would answer EBUSY).
        RequireUffd();
        using var memory = new AnonymousMapping(2UL << 20);
        using var hole = new AnonymousMapping(1UL << 20);
        nint unmapped = hole.Address;
        hole.Dispose();
        using var tracker = new UserfaultfdTracker([new HostMemoryRegion(memory.Address, 0, 2UL << 20), new HostMemoryRegion(unmapped, 4UL << 20, 1UL << 20)]);

        Assert.That(tracker.StartTracking, Throws.TypeOf<DirtyTrackerException>()
            .With.Message.Contains("UFFDIO_REGISTER").And.InnerException.TypeOf<KernelException>());
        Assert.That(tracker.State, Is.EqualTo(DirtyTrackerState.Stopped));

        memory.WriteUInt64(0, 1); // not write-protected any more: no fault handling needed, no hang
        using var again = new UserfaultfdTracker([new HostMemoryRegion(memory.Address, 0, 2UL << 20)]);
        again.StartTracking();
        memory.WriteUInt64(4096, 2);
        using var pages = new SparseDirtyBitmap(40);
        Assert.That(again.ReadDirty(again.Coverage[0], pages, DirtyReadMode.Clear), Is.EqualTo(1));
    }

    [Test]
    public void UnalignedRegionsAreRefused()
    {
        Assert.That(() => new UserfaultfdTracker([new HostMemoryRegion(4097, 0, 4096)]), Throws.ArgumentException.With.Message.Contains("page-aligned"));
    }

    private static void Collect(SparseDirtyBitmap reported, HashSet<ulong> seen)
    {
        reported.HarvestInto(seen);
    }
}
