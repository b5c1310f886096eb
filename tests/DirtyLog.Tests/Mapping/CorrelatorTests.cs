// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Mapping;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Mapping;

/// <summary>The correlator's map operations one at a time: translation, ordering, bad input that changes nothing, edge cases.</summary>
[TestFixture]
public class CorrelatorTests : EmulatedIommuFixture
{
    private SparseDirtyBitmap _target = null!;
    private IoAddressSpace _space = null!;
    private IommuTracker _tracker = null!;

    [SetUp]
    public void CreateCorrelator()
    {
        _target = new SparseDirtyBitmap(40);
        _space = new Correlator(_target).AddAddressSpace(Ioas, new EmulatedIoMapBackend(Iommu, Ioas, 2 * MiB));
        _tracker = new IommuTracker(Hwpt);
        _space.Attach(_tracker);
    }

    [TearDown]
    public void DisposeCorrelator()
    {
        _tracker.Dispose();
        _target.Dispose();
    }

    [Test]
    public void AnUnmapReadsTheIommuBeforeItDropsTheBitsAndTranslatesWithTheOldMapping()
    {
        _space.Map(1UL << 40, 4 * MiB, 4 * MiB);
        _tracker.StartTracking();
        Hwpt.DmaWriteUInt64((1UL << 40) + (5 * 4096), 1);
        Assert.That(_space.Unmap(1UL << 40, 4 * MiB), Is.EqualTo(4 * MiB));

        // The 2 MiB entry's dirty bit stands for its 512 pages: the hardware's granularity, in guest space.
        var pages = new HashSet<ulong>();
        _target.HarvestInto(pages);
        Assert.That(pages, Has.Count.EqualTo(512).And.Contains((4 * MiB / 4096) + 5));
        _space.Map(1UL << 40, 12 * MiB, 4 * MiB);
        Assert.That(_space.ReadDirty(_tracker, DirtyReadMode.Clear), Is.Zero, "the remapped IOVA starts clean");
    }

    [Test]
    public void BadInputChangesNothing()
    {
        _space.Map(0x1000_0000, 0, 2 * MiB);
        Assert.Multiple(() =>
        {
            Assert.That(() => _space.Map(0x1000_0000 + MiB, 8 * MiB, 2 * MiB), Throws.ArgumentException.With.Message.Contains("overlaps"));
            Assert.That(() => _space.Map(0x2000_0001, 0, 4096), Throws.ArgumentException.With.Message.Contains("aligned"));
            Assert.That(() => _space.Map(0x2000_0000, 0, 0), Throws.ArgumentException);
            Assert.That(() => _space.Map(ulong.MaxValue - 4095, 0, 8192), Throws.ArgumentException);
            Assert.That(() => _space.Map(0x3000_0000, 1UL << 40, 4096), Throws.ArgumentException.With.Message.Contains("outside"));
            Assert.That(() => _space.Unmap(0x1000_0000, MiB), Throws.ArgumentException.With.Message.Contains("cannot split"));
        });
        Assert.That(_space.GetMappings(), Is.EqualTo(new[] { new IovaMapping(0x1000_0000, 0, 2 * MiB) }));
        Assert.That(Iommu.Unmap(Ioas, 0, ulong.MaxValue), Is.EqualTo(2 * MiB), "the backend holds exactly the one mapping");
    }

    [Test]
    public void UnmappingNothingIsNotAnError()
    {
        Assert.That(_space.Unmap(0x5000_0000, MiB), Is.Zero);
        Assert.That(_space.MappingCount, Is.Zero);
    }

    [Test]
    public void AliasesTranslateToTheSameGuestPage()
    {
        _space.Map(0x1000_0000, 2 * MiB, 2 * MiB);
        _space.Map(0x9000_0000, 2 * MiB, 2 * MiB);
        Assert.Multiple(() =>
        {
            Assert.That(_space.TryTranslate(0x1000_0000 + 4096, out ulong a) && _space.TryTranslate(0x9000_0000 + 4096, out ulong b) && a == b, Is.True);
            Assert.That(_space.TryTranslate(0x5000_0000, out _), Is.False);
        });
    }

    [Test]
    public void MappingsAtExtremeIovasCostWhatIsMappedNotTheWidth()
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        _space.Map(0, 0, 4096);
        _space.Map(1UL << 62, 4096, 4096);
        _space.Map(ulong.MaxValue - (2 * MiB) + 1, 2 * MiB, 4096 * 0 + (2 * MiB) - 4096);
        _tracker.StartTracking();
        Hwpt.DmaWriteUInt64(1UL << 62, 1);
        Assert.That(_space.ReadDirty(_tracker, DirtyReadMode.Clear), Is.EqualTo(1UL));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(1L << 20), "bytes allocated for three mappings across the whole space");
    }

    [Test]
    public void AMillionMappingsAreFoundAgain()
    {
        var table = new MappingTable();
        var random = new Random(7);
        var order = new int[1_000_000];
        for (int i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        random.Shuffle(order);
        foreach (int i in order)
        {
            table.Add(new IovaMapping((ulong)i * 8192, (ulong)i * 4096, 4096));
        }

        Assert.That(table.Count, Is.EqualTo(1_000_000));
        for (int k = 0; k < 10_000; k++)
        {
            ulong i = (ulong)random.Next(1_000_000);
            Assert.That(table.TryFind((i * 8192) + 100, out IovaMapping m) && m.GuestAddress == i * 4096, Is.True);
            Assert.That(table.TryFind((i * 8192) + 4096, out _), Is.False, "the gap between mappings");
        }

        foreach (int i in order[..500_000])
        {
            Assert.That(table.Remove((ulong)i * 8192), Is.True);
        }

        var overlap = new List<IovaMapping>();
        table.CollectOverlapping(0, ulong.MaxValue, overlap);
        Assert.That(overlap, Has.Count.EqualTo(500_000).And.Ordered.By(nameof(IovaMapping.Iova)));
    }
}
