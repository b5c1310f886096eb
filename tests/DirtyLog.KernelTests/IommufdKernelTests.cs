// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Mapping;
using DirtyLog.Native;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.KernelTests;

/// <summary>
/// DirtyLog's iommufd binding, <see cref="IommuTracker"/> over <see cref="IommufdDirtyPort"/>, the correlator over
/// <see cref="IommufdIoMapBackend"/> and the harvester, against the kernel's own iommufd and its test IOMMU.
/// </summary>
internal static class IommufdKernelTests
{
    private const ulong MiB = 1UL << 20;

    public static IEnumerable<(string, Action)> All()
    {
        foreach (ulong granule in new ulong[] { 4096, 16384, 2 * MiB })
        {
            yield return ($"ScatteredDmaIsReportedPageForPageWithAndWithoutNoClear(granule {granule})", () => ScatteredDma(granule));
        }

        yield return (nameof(TheTestCommandLayoutIsTheKernels), TheTestCommandLayoutIsTheKernels);
        yield return (nameof(AnIoasReportsTheWholeSpaceAloneAndTheApertureOnceADeviceIsAttached), AnIoasReportsTheWholeSpaceAloneAndTheApertureOnceADeviceIsAttached);
        yield return (nameof(HugeIoPagesReportTheirWholeEntry), HugeIoPagesReportTheirWholeEntry);
        yield return (nameof(ADeviceWithoutDirtyTrackingIsRefusedClearly), ADeviceWithoutDirtyTrackingIsRefusedClearly);
        yield return (nameof(AnUnmapDropsTheDirtyBitsAndHolesReadClean), AnUnmapDropsTheDirtyBitsAndHolesReadClean);
        yield return (nameof(TheCorrelatorTranslatesDmaThroughTheRealMapBackend), TheCorrelatorTranslatesDmaThroughTheRealMapBackend);
        yield return (nameof(TheHarvesterReadsTheRealHwpt), TheHarvesterReadsTheRealHwpt);
        yield return (nameof(EveryErrorTheBindingMapsIsTheKernelsOwn), EveryErrorTheBindingMapsIsTheKernelsOwn);
    }

    private static void ScatteredDma(ulong granule)
    {
        using var setup = new MockSetup(64 * MiB);
        AddressRange window = setup.Map(MockIommu.ApertureStart, 0, 64 * MiB);
        using var tracker = new IommuTracker(new IommufdDirtyPort(setup.Iommufd, setup.Ioas, setup.Hwpt), (long)granule);
        tracker.SetMappedRanges([window]);
        tracker.StartTracking();
        var random = new Random(7 + (int)granule);
        for (int round = 1; round <= 6; round++)
        {
            List<ulong> written = MockSetup.RandomMockPages(random, window, 997);
            ulong set = setup.Dirty(window, written);
            Check.Equal((ulong)written.Count, set, $"round {round}: mock pages the kernel dirtied");
            HashSet<ulong> expected = MockSetup.Expected(written, granule);
            Check.SamePages(expected, MockSetup.Read(tracker, window, DirtyReadMode.NoClear), $"round {round}, NO_CLEAR read");
            Check.SamePages(expected, MockSetup.Read(tracker, window, DirtyReadMode.Clear), $"round {round}, read and clear");
            Check.SamePages(new HashSet<ulong>(), MockSetup.Read(tracker, window, DirtyReadMode.Clear), $"round {round}, after the clear");
        }

        tracker.StopTracking();
    }

    /// <summary>
    /// The test command's layout, checked against the running kernel: it takes any size from the end of <c>last</c>
    /// (offset 64 + 4) on, and refuses non-zero bytes past its own struct (72 bytes) with E2BIG, so the union is
    /// 48 bytes and every union field sits at offset 16 + its place, as <see cref="MockIommu"/> writes them.
    /// </summary>
    private static void TheTestCommandLayoutIsTheKernels()
    {
        using IommufdContext iommufd = IommufdContext.Open();
        uint ioas = iommufd.AllocateIoas();
        Check.Equal(Errno.EINVAL, MockIommu.ProbeSize(iommufd, ioas, 67, 0), "a size that ends inside last");
        Check.Equal((Errno)0, MockIommu.ProbeSize(iommufd, ioas, 68, 0), "a size that ends with last");
        Check.Equal((Errno)0, MockIommu.ProbeSize(iommufd, ioas, MockIommu.CommandBytes, 0), "the whole struct");
        Check.Equal((Errno)0, MockIommu.ProbeSize(iommufd, ioas, 80, 0), "a longer struct with zeros past the kernel's");
        Check.Equal(Errno.E2BIG, MockIommu.ProbeSize(iommufd, ioas, 80, 0xff), "non-zero bytes past the kernel's struct");
    }

    private static void AnIoasReportsTheWholeSpaceAloneAndTheApertureOnceADeviceIsAttached()
    {
        using IommufdContext iommufd = IommufdContext.Open();
        uint ioas = iommufd.AllocateIoas();
        IReadOnlyList<AddressRange> alone = iommufd.GetIovaRanges(ioas, out ulong alignment);
        Check.Equal(2, alone.Count, "the whole 2^64 space comes back as two halves (an AddressRange holds at most 2^64 - 1 bytes)");
        Check.That(alone[0].Start == 0 && alone[1].End == 0 && alone[0].End == alone[1].Start, $"contiguous halves: {alone[0]}, {alone[1]}");
        Check.That(alignment >= 1, $"alignment {alignment}");

        MockIommu.CreateDevice(iommufd, ioas);
        IReadOnlyList<AddressRange> attached = iommufd.GetIovaRanges(ioas, out alignment);
        Check.Equal(1, attached.Count, "one allowed range");
        Check.Equal(new AddressRange(MockIommu.ApertureStart, MockIommu.ApertureLast - MockIommu.ApertureStart + 1), attached[0], "the mock IOMMU's aperture");
        using var memory = new AnonymousMapping(4096);
        Check.Equal(Errno.EINVAL, Check.Throws<KernelException>(() => iommufd.Map(ioas, (ulong)memory.Address, 4096, MockIommu.ApertureLast + 1), "a map past the aperture").Errno, "a map past the aperture");
    }

    private static void HugeIoPagesReportTheirWholeEntry()
    {
        using var setup = new MockSetup(64 * MiB, MockDeviceFlags.HugeIova);
        AddressRange window = setup.Map(MockIommu.ApertureStart, 0, 64 * MiB);
        using var tracker = new IommuTracker(new IommufdDirtyPort(setup.Iommufd, setup.Ioas, setup.Hwpt));
        tracker.SetMappedRanges([window]);
        tracker.StartTracking();
        ulong[] written = [window.Start + (3 * MiB) + 2048, window.Start + (40 * MiB) + (512 * 1024)];
        setup.Dirty(window, written);

        // The mock IOMMU's huge entry is 512 mock pages (1 MiB): its dirty bit covers all of it, never less.
        HashSet<ulong> reported = MockSetup.Read(tracker, window, DirtyReadMode.Clear);
        Check.SamePages(MockSetup.Expected(written, MockIommu.HugeMockPageSize), reported, "huge IO pages");
    }

    private static void ADeviceWithoutDirtyTrackingIsRefusedClearly()
    {
        using IommufdContext iommufd = IommufdContext.Open();
        uint ioas = iommufd.AllocateIoas();
        MockDevice device = MockIommu.CreateDevice(iommufd, ioas, MockDeviceFlags.NoDirty);
        Check.That(!iommufd.SupportsDirtyTracking(device.DeviceId), "IOMMU_GET_HW_INFO says the device's IOMMU has no dirty tracking");
        KernelException refused = Check.Throws<KernelException>(() => iommufd.AllocateHwpt(device.DeviceId, ioas, dirtyTracking: true), "a dirty-tracking HWPT for it");
        Check.Equal(Errno.EOPNOTSUPP, refused.Errno, "the kernel's answer");
        Check.That(refused.Message.Contains("IOMMU_HWPT_ALLOC", StringComparison.Ordinal), $"the message names the call: {refused.Message}");

        MockDevice capable = MockIommu.CreateDevice(iommufd, ioas);
        uint plain = iommufd.AllocateHwpt(capable.DeviceId, ioas, dirtyTracking: false);
        using var tracker = new IommuTracker(new IommufdDirtyPort(iommufd, ioas, plain));
        Check.Throws<DirtyTrackerException>(tracker.StartTracking, "starting a tracker over a HWPT allocated without dirty tracking");
        Check.Equal(DirtyTrackerState.Stopped, tracker.State, "the tracker after the refused start (nothing started)");
    }

    private static void AnUnmapDropsTheDirtyBitsAndHolesReadClean()
    {
        using var setup = new MockSetup(32 * MiB);
        AddressRange first = setup.Map(MockIommu.ApertureStart, 0, 8 * MiB);
        AddressRange second = setup.Map(MockIommu.ApertureStart + (12 * MiB), 8 * MiB, 8 * MiB); // a 4 MiB hole between
        var whole = new AddressRange(first.Start, second.End - first.Start);
        using var tracker = new IommuTracker(new IommufdDirtyPort(setup.Iommufd, setup.Ioas, setup.Hwpt));
        tracker.SetMappedRanges([first, second]);
        tracker.StartTracking();
        var random = new Random(11);
        List<ulong> inFirst = MockSetup.RandomMockPages(random, first, 50), inSecond = MockSetup.RandomMockPages(random, second, 50);
        setup.Dirty(whole, inFirst.Concat(inSecond));
        Check.SamePages(MockSetup.Expected(inFirst.Concat(inSecond), 4096), MockSetup.Read(tracker, whole, DirtyReadMode.NoClear), "both mappings, across the hole");

        // iommufd's unmap drops the entries and their dirty bits: a VMM must read (NO_CLEAR) before it unmaps.
        Check.Equal(first.Length, setup.Iommufd.Unmap(setup.Ioas, first.Start, first.Length), "bytes unmapped");
        setup.Map(first.Start, 0, first.Length);
        Check.SamePages(MockSetup.Expected(inSecond, 4096), MockSetup.Read(tracker, whole, DirtyReadMode.Clear), "after the unmap and a fresh map");
    }

    private static void TheCorrelatorTranslatesDmaThroughTheRealMapBackend()
    {
        using var setup = new MockSetup(32 * MiB);
        using var shared = new SparseDirtyBitmap(40);
        var correlator = new Correlator(shared);
        var guest = new HostMemoryRegion(setup.Memory.Address, 0, 32 * MiB);
        IoAddressSpace space = correlator.AddAddressSpace(setup.Ioas, new IommufdIoMapBackend(setup.Iommufd, setup.Ioas, [guest]));
        using var tracker = new IommuTracker(new IommufdDirtyPort(setup.Iommufd, setup.Ioas, setup.Hwpt));
        space.Attach(tracker);
        ulong iova = MockIommu.ApertureStart;
        space.Map(iova, 4 * MiB, 8 * MiB);              // IOVA [2^24, +8 MiB) -> guest [4 MiB, 12 MiB)
        tracker.StartTracking();
        var window = new AddressRange(iova, 8 * MiB);
        ulong[] before = [iova + 4096, iova + (5 * MiB) + 2048];
        setup.Dirty(window, before);

        // A vIOMMU invalidation remaps the IOVA to other guest pages: the old mapping's dirt is synced to its old
        // guest pages first, then the new translation applies.
        space.Remap(iova, 8 * MiB, newGuestAddress: 16 * MiB);
        ulong[] after = [iova + (2 * MiB)];
        setup.Dirty(window, after);
        space.ReadDirty(tracker, DirtyReadMode.Clear);

        // An unmap syncs (NO_CLEAR read, then unmap) so nothing written before it is lost.
        ulong[] last = [iova + (7 * MiB)];
        setup.Dirty(window, last);
        space.Unmap(iova, 8 * MiB);

        var expected = new HashSet<ulong>();
        foreach (ulong a in before)
        {
            expected.Add(((a - iova) + (4 * MiB)) / 4096);
        }

        foreach (ulong a in after.Concat(last))
        {
            expected.Add(((a - iova) + (16 * MiB)) / 4096);
        }

        Check.SamePages(expected, MockSetup.Pages(shared), "guest pages, through map, remap and a synced unmap");
    }

    private static void TheHarvesterReadsTheRealHwpt()
    {
        using var setup = new MockSetup(16 * MiB);
        using var shared = new SparseDirtyBitmap(40);
        var correlator = new Correlator(shared);
        IoAddressSpace space = correlator.AddAddressSpace(setup.Ioas, new IommufdIoMapBackend(setup.Iommufd, setup.Ioas, [new HostMemoryRegion(setup.Memory.Address, 0, 16 * MiB)]));
        using var tracker = new IommuTracker(new IommufdDirtyPort(setup.Iommufd, setup.Ioas, setup.Hwpt));
        space.Attach(tracker);
        space.Map(MockIommu.ApertureStart, 0, 16 * MiB);
        using var harvester = new ParallelHarvester(shared);
        harvester.Add(tracker, space, TrackerFaultPolicy.FailRound);
        harvester.StartTracking();
        var window = new AddressRange(MockIommu.ApertureStart, 16 * MiB);
        var random = new Random(3);
        for (int round = 1; round <= 3; round++)
        {
            List<ulong> written = MockSetup.RandomMockPages(random, window, 300);
            setup.Dirty(window, written);
            using HarvestRound harvested = harvester.RunRound(TimeSpan.FromSeconds(10), CancellationToken.None);
            var pages = new HashSet<ulong>();
            foreach (DirtyRun run in harvested.Runs)
            {
                for (ulong page = run.FirstPage; page < run.EndPage; page++)
                {
                    pages.Add(page);
                }
            }

            harvested.Commit();
            HashSet<ulong> expected = MockSetup.Expected(written.Select(a => a - MockIommu.ApertureStart), 4096);
            Check.SamePages(expected, pages, $"harvest round {round}, in guest pages");
        }

        harvester.StopTracking();
    }

    private static void EveryErrorTheBindingMapsIsTheKernelsOwn()
    {
        using var setup = new MockSetup(4 * MiB);
        Errno Of(Action action, string what) => Check.Throws<KernelException>(action, what).Errno;

        Check.Equal(Errno.ENOENT, Of(() => setup.Iommufd.Unmap(setup.Ioas, MockIommu.ApertureStart, 4 * MiB), "unmap of nothing"), "unmap of nothing");
        setup.Map(MockIommu.ApertureStart, 0, 4 * MiB);
        Check.Equal(Errno.EEXIST, Of(() => setup.Map(MockIommu.ApertureStart, 0, 4 * MiB), "a second map at the same IOVA"), "a second map at the same IOVA");
        Check.Equal(Errno.ENOENT, Of(() => setup.Iommufd.AllocateHwpt(0xdead, setup.Ioas, dirtyTracking: true), "a HWPT for no device"), "a HWPT for no device");
        Check.Equal(Errno.ENOENT, Of(() => setup.Iommufd.SetDirtyTracking(0xdead, true), "dirty tracking on no HWPT"), "dirty tracking on no HWPT");
        var bitmap = new ulong[16];
        Check.Equal(Errno.EINVAL, Of(() => setup.Iommufd.GetDirtyBitmap(setup.Hwpt, MockIommu.ApertureStart + 1, 4096, 4096, bitmap, noClear: true), "an unaligned IOVA"), "an unaligned IOVA");
        Check.Throws<ArgumentException>(() => setup.Iommufd.GetDirtyBitmap(setup.Hwpt, MockIommu.ApertureStart, 4 * MiB, 4096 * 3, bitmap, noClear: true), "a page size that is not a power of two (refused before the kernel)");
        Check.Equal(Errno.ENOENT, Of(() => setup.Iommufd.Destroy(0xdead), "destroy of no object"), "destroy of no object");
        Check.Equal(Errno.ENOENT, Of(() => setup.Iommufd.GetIovaRanges(0xdead, out _), "the ranges of no IOAS"), "the ranges of no IOAS");
        Check.Equal(Errno.ENOENT, Of(() => setup.Iommufd.SupportsDirtyTracking(0xdead), "the capabilities of no device"), "the capabilities of no device");
        Check.Equal(Errno.EFAULT, Of(() => setup.Iommufd.Map(setup.Ioas, 0x1000, 64 * 1024, MockIommu.ApertureStart + (8 * MiB)), "a map of memory this process does not have"), "a map of memory this process does not have");
        uint plain = setup.Iommufd.AllocateHwpt(setup.Device.DeviceId, setup.Ioas, dirtyTracking: false);
        Errno notTracking = Of(() => setup.Iommufd.GetDirtyBitmap(plain, MockIommu.ApertureStart, 4 * MiB, 4096, bitmap, noClear: true), "the dirty bitmap of a HWPT without dirty tracking");
        Check.Equal(Errno.EOPNOTSUPP, notTracking, "the dirty bitmap of a HWPT without dirty tracking");
    }
}
