// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Tracking;

/// <summary>
/// DMA engines write an iteration number into pages through an emulated device and the emulated IOMMU behind it, while
/// the device's tracker and the IOMMU's tracker are read in a loop, as the kernel's dirty_log_test does with vCPUs.
/// Ground truth is guest memory: every page holding a write must have been reported by both trackers, every page the
/// IOMMU tracker reported must share an IOMMU entry with a written page, and the device (4 KiB granules) reports
/// written pages only.
/// </summary>
[TestFixture]
[Category("Unit")]
[Category("Concurrency")]
public class DmaTrackerStressTests
{
    private const ulong MiB = 1024 * 1024;
    private const ulong IovaBase = 1UL << 32;
    private const ulong RegionBytes = 16 * MiB;
    private static readonly TimeSpan s_deadline = TimeSpan.FromMinutes(2);

    [TestCase(1, 2)]
    [TestCase(2, 2)]
    [TestCase(3, 3)]
    public void EveryPageWrittenByDmaIsReportedAndNothingOutsideItsEntry(int seed, int engines)
    {
        using var memory = new EmulatedGuestMemory(2 * RegionBytes);
        var iommu = new EmulatedIommu(memory);
        uint ioas = iommu.AllocateIoas();
        EmulatedHwpt hwpt = iommu.AllocateHwpt(ioas, dirtyTracking: true);

        // Region 0 in 4 KiB entries, region 1 in 2 MiB entries, with a 16 MiB hole between them in IOVA.
        iommu.Map(ioas, IovaBase, 0, RegionBytes, maxEntrySize: 4096);
        iommu.Map(ioas, IovaBase + (2 * RegionBytes), RegionBytes, RegionBytes, maxEntrySize: 2 * MiB);
        AddressRange[] mapped = [new AddressRange(IovaBase, RegionBytes), new AddressRange(IovaBase + (2 * RegionBytes), RegionBytes)];
        using var tracker = new IommuTracker(hwpt);
        tracker.SetMappedRanges(mapped);
        tracker.StartTracking();
        var device = new EmulatedDmaDevice(hwpt);
        using var deviceTracker = new DeviceTracker(device);
        deviceTracker.SetMappedRanges(mapped);
        deviceTracker.StartTracking();

        using var reported = new SparseDirtyBitmap(48);
        var everReported = new HashSet<ulong>();
        var deviceReported = new HashSet<ulong>();
        const int Rounds = 30;
        const int WritesPerRound = 60;
        using var start = new Barrier(engines + 1);
        int remaining = 0;
        var failures = new List<string>();
        var threads = new Thread[engines];
        for (int e = 0; e < engines; e++)
        {
            int id = e;
            threads[e] = new Thread(() =>
            {
                var random = new Random((seed * 100) + id);
                for (int round = 1; round <= Rounds; round++)
                {
                    if (!start.SignalAndWait(s_deadline))
                    {
                        return;
                    }

                    for (int i = 0; i < WritesPerRound; i++)
                    {
                        // Nine writes in ten land in the 4 KiB region; the rest in the first three 2 MiB entries
                        // of the other region only, so the five entries after them must never be reported.
                        ulong page = random.Next(10) != 0
                            ? (ulong)random.NextInt64((long)(RegionBytes / 4096))
                            : (RegionBytes / 4096) + (ulong)random.Next((int)(3 * 2 * MiB / 4096));
                        ulong iova = IovaBase + (page * 4096) + (page >= RegionBytes / 4096 ? RegionBytes : 0) + (ulong)(8 * id);
                        if (!device.DmaWriteUInt64(iova, (ulong)round))
                        {
                            lock (failures)
                            {
                                failures.Add($"IO page fault at 0x{iova:x}");
                            }
                        }
                    }

                    Interlocked.Decrement(ref remaining);
                }
            })
            { IsBackground = true, Name = $"dma engine {id}" };
            threads[e].Start();
        }

        var all = new AddressRange(IovaBase, 3 * RegionBytes);
        var harvestRandom = new Random(-seed);
        for (int round = 1; round <= Rounds; round++)
        {
            Volatile.Write(ref remaining, engines);
            Assert.That(start.SignalAndWait(s_deadline), Is.True, "engines reached the barrier");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (Volatile.Read(ref remaining) > 0 && clock.Elapsed < s_deadline)
            {
                tracker.ReadDirty(all, reported, harvestRandom.Next(4) == 0 ? DirtyReadMode.NoClear : DirtyReadMode.Clear);
                Collect(reported, everReported);
                deviceTracker.ReadDirty(all, reported, DirtyReadMode.Clear);
                Collect(reported, deviceReported);
            }

            // Every write of this round completed before these reads started.
            tracker.ReadDirty(all, reported, DirtyReadMode.Clear);
            Collect(reported, everReported);
            deviceTracker.ReadDirty(all, reported, DirtyReadMode.Clear);
            Collect(reported, deviceReported);
        }

        foreach (Thread t in threads)
        {
            Assert.That(t.Join(s_deadline), Is.True, $"{t.Name} finished");
        }

        tracker.StopTracking();
        deviceTracker.StopTracking();
        Assert.That(failures, Is.Empty);
        Verify(memory, everReported, engines, EntryOf, "IOMMU tracker");
        Verify(memory, deviceReported, engines, iovaPage => iovaPage << 12, "device tracker");
    }

    private static void Collect(SparseDirtyBitmap reported, HashSet<ulong> everReported)
    {
        reported.HarvestInto(everReported);
    }

    private static void Verify(EmulatedGuestMemory memory, HashSet<ulong> everReported, int engines, Func<ulong, ulong> entryOf, string who)
    {
        int written = 0, missed = 0, overReported = 0;
        var writtenEntries = new HashSet<ulong>();
        for (ulong page = 0; page < 2 * RegionBytes / 4096; page++)
        {
            bool isWritten = false;
            for (int id = 0; id < engines; id++)
            {
                isWritten |= memory.ReadUInt64((page * 4096) + (ulong)(8 * id)) != 0;
            }

            ulong iovaPage = ((IovaBase + (page * 4096) + (page >= RegionBytes / 4096 ? RegionBytes : 0)) >> 12);
            if (isWritten)
            {
                written++;
                writtenEntries.Add(entryOf(iovaPage));
                if (!everReported.Contains(iovaPage))
                {
                    missed++;
                }
            }
        }

        foreach (ulong iovaPage in everReported)
        {
            if (!writtenEntries.Contains(entryOf(iovaPage)))
            {
                overReported++;
            }
        }

        TestContext.Out.WriteLine($"{who}: {written} pages written, {everReported.Count} reported, {missed} missed, {overReported} outside any written granule");
        Assert.Multiple(() =>
        {
            Assert.That(written, Is.InRange(1000, 6000), "the engines wrote some pages, not all");
            Assert.That(missed, Is.Zero, $"{who}: written pages never reported");
            Assert.That(overReported, Is.Zero, $"{who}: reported pages outside every written granule");
        });
    }

    /// <summary>The IOMMU entry of an IOVA page: 4 KiB in the first region, 2 MiB in the second.</summary>
    private static ulong EntryOf(ulong iovaPage) =>
        (iovaPage << 12) >= IovaBase + (2 * RegionBytes) ? ((iovaPage << 12) & ~((2 * MiB) - 1)) : iovaPage << 12;
}
