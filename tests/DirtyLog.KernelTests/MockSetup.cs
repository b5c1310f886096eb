// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Tracking;

namespace DirtyLog.KernelTests;

/// <summary>
/// An iommufd with one IO address space, a mock device attached to a dirty-tracking HWPT over it, and guest memory to
/// map: what a VMM sets up for a passthrough device, with the kernel's test IOMMU standing in for the hardware.
/// </summary>
/// <remarks>Not thread-safe; one per test.</remarks>
internal sealed class MockSetup : IDisposable
{
    public MockSetup(ulong memoryBytes, MockDeviceFlags flags = MockDeviceFlags.None)
    {
        Iommufd = IommufdContext.Open();
        Ioas = Iommufd.AllocateIoas();
        Device = MockIommu.CreateDevice(Iommufd, Ioas, flags);
        Hwpt = Iommufd.AllocateHwpt(Device.DeviceId, Ioas, dirtyTracking: true);
        MockIommu.Replace(Iommufd, Device, Hwpt);
        Memory = new AnonymousMapping(memoryBytes);
    }

    public IommufdContext Iommufd { get; }

    public uint Ioas { get; }

    public MockDevice Device { get; }

    public uint Hwpt { get; }

    public AnonymousMapping Memory { get; }

    /// <summary>Maps guest memory from <paramref name="offset"/> at <paramref name="iova"/>.</summary>
    public AddressRange Map(ulong iova, ulong offset, ulong length)
    {
        Iommufd.Map(Ioas, (ulong)Memory.Address + offset, length, iova);
        return new AddressRange(iova, length);
    }

    /// <summary>"DMA" to the given mock pages (IOVAs of 2 KiB mock pages inside <paramref name="window"/>).</summary>
    public ulong Dirty(AddressRange window, IEnumerable<ulong> mockPageIovas)
    {
        var bits = new ulong[((window.Length / MockIommu.MockPageSize) + 63) / 64];
        foreach (ulong iova in mockPageIovas)
        {
            ulong bit = (iova - window.Start) / MockIommu.MockPageSize;
            bits[bit / 64] |= 1UL << (int)(bit % 64);
        }

        return MockIommu.Dirty(Iommufd, Hwpt, window.Start, window.Length, bits);
    }

    /// <summary>What a tracker read reports, as a set of 4 KiB IOVA page numbers.</summary>
    public static HashSet<ulong> Read(IDirtyTracker tracker, AddressRange range, DirtyReadMode mode)
    {
        using var bitmap = new SparseDirtyBitmap(48);
        tracker.ReadDirty(range, bitmap, mode);
        return Pages(bitmap);
    }

    public static HashSet<ulong> Pages(SparseDirtyBitmap bitmap)
    {
        var pages = new HashSet<ulong>();
        var runs = new DirtyRun[256];
        HarvestResult result;
        do
        {
            result = bitmap.Harvest(runs);
            foreach (DirtyRun run in runs.AsSpan(0, (int)result.Runs))
            {
                for (ulong page = run.FirstPage; page < run.EndPage; page++)
                {
                    pages.Add(page);
                }
            }
        }
        while (!result.Completed);
        return pages;
    }

    /// <summary>The 4 KiB pages a read at <paramref name="granule"/> must report for writes to these mock pages.</summary>
    public static HashSet<ulong> Expected(IEnumerable<ulong> mockPageIovas, ulong granule)
    {
        var pages = new HashSet<ulong>();
        foreach (ulong iova in mockPageIovas)
        {
            ulong first = iova / granule * granule;
            for (ulong address = first; address < first + granule; address += 4096)
            {
                pages.Add(address / 4096);
            }
        }

        return pages;
    }

    /// <summary>Seeded random mock pages of <paramref name="window"/>, about one in <paramref name="oneIn"/>.</summary>
    public static List<ulong> RandomMockPages(Random random, AddressRange window, int oneIn)
    {
        var pages = new List<ulong>();
        for (ulong iova = window.Start; iova < window.End; iova += MockIommu.MockPageSize)
        {
            if (random.Next(oneIn) == 0)
            {
                pages.Add(iova);
            }
        }

        return pages;
    }

    public void Dispose()
    {
        Iommufd.Dispose(); // closing the iommufd destroys its objects and unmaps everything
        Memory.Dispose();
    }
}
