// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using DirtyLog.Memory;
using DirtyLog.Native;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Memory;

/// <summary>The regions of a guest memory map: what it takes, what it refuses, how it finds a range.</summary>
[TestFixture]
public class GuestMemoryMapTests
{
    private const ulong MiB = 1UL << 20;
    private AnonymousMapping _backing = null!;

    [SetUp]
    public void SetUp() => _backing = new AnonymousMapping(16 * MiB);

    [TearDown]
    public void TearDown() => _backing.Dispose();

    private HostMemoryRegion Region(ulong guest, ulong length, ulong hostOffset) => new(_backing.Address + (nint)hostOffset, guest, length);

    [Test]
    public void RegionsAreKeptByGuestAddressAndEachChangeBumpsTheVersion()
    {
        var map = new GuestMemoryMap();
        long empty = map.Version;
        map.Add(Region(8 * MiB, 2 * MiB, 0));
        map.Add(Region(0, 4 * MiB, 4 * MiB));
        Assert.Multiple(() =>
        {
            Assert.That(map.Regions.Select(r => r.GuestAddress), Is.EqualTo(new[] { 0UL, 8 * MiB }));
            Assert.That(map.Size, Is.EqualTo(6 * MiB));
            Assert.That(map.Version, Is.EqualTo(empty + 2));
        });

        HostMemoryRegion removed = map.Remove(8 * MiB);
        Assert.Multiple(() =>
        {
            Assert.That(removed, Is.EqualTo(Region(8 * MiB, 2 * MiB, 0)));
            Assert.That(map.Regions, Has.Count.EqualTo(1));
            Assert.That(map.Size, Is.EqualTo(4 * MiB));
            Assert.That(map.Version, Is.EqualTo(empty + 3));
        });
    }

    [Test]
    public void ASnapshotOfTheRegionsDoesNotChangeWithTheMap()
    {
        var map = new GuestMemoryMap([Region(0, MiB, 0)]);
        var before = map.Regions;
        map.Add(Region(4 * MiB, MiB, MiB));
        Assert.That(before, Has.Count.EqualTo(1));
    }

    [TestCase(0UL, 0UL, "non-empty")]
    [TestCase(100UL, 4096UL, "aligned")]
    [TestCase(0UL, 4000UL, "aligned")]
    [TestCase(ulong.MaxValue - 4095, 8192UL, "wrap")]
    public void ABadRegionIsRefusedWithWhatIsWrong(ulong guest, ulong length, string why)
    {
        var map = new GuestMemoryMap();
        Assert.That(() => map.Add(new HostMemoryRegion(_backing.Address, guest, length)), Throws.ArgumentException.With.Message.Contains(why));
        Assert.That(map.Regions, Is.Empty);
    }

    [Test]
    public void AnUnmappedRegionIsRefused() =>
        Assert.That(() => new GuestMemoryMap().Add(new HostMemoryRegion(0, 0, 4096)), Throws.ArgumentException.With.Message.Contains("mapped"));

    [TestCase(0UL, 4 * MiB)]          // the same
    [TestCase(3 * MiB, 2 * MiB)]      // its tail
    [TestCase(0UL, 8 * MiB)]          // around both
    [TestCase(5 * MiB + 4096, 4096UL)] // inside the second
    public void AnOverlappingRegionIsRefusedAndTheMapKeepsWhatItHad(ulong guest, ulong length)
    {
        var map = new GuestMemoryMap([Region(0, 4 * MiB, 0), Region(5 * MiB, 2 * MiB, 8 * MiB)]);
        long version = map.Version;
        Assert.That(() => map.Add(Region(guest, length, 4 * MiB)), Throws.ArgumentException.With.Message.Contains("overlaps"));
        Assert.That(map.Version, Is.EqualTo(version));
        Assert.That(map.Regions, Has.Count.EqualTo(2));
    }

    [Test]
    public void ARegionNextToAnotherIsNotAnOverlap()
    {
        var map = new GuestMemoryMap([Region(0, 4 * MiB, 0)]);
        map.Add(Region(4 * MiB, 4 * MiB, 4 * MiB));
        Assert.That(map.Size, Is.EqualTo(8 * MiB));
    }

    [Test]
    public void RemovingWhereNoRegionStartsIsRefused()
    {
        var map = new GuestMemoryMap([Region(0, 4 * MiB, 0)]);
        Assert.Multiple(() =>
        {
            Assert.That(() => map.Remove(4096), Throws.ArgumentException.With.Message.Contains("No region starts at guest 0x1000"));
            Assert.That(() => map.Remove(8 * MiB), Throws.ArgumentException);
            Assert.That(map.Regions, Has.Count.EqualTo(1));
        });
    }

    [Test]
    public void ARangeIsFoundOnlyInsideOneRegion()
    {
        var map = new GuestMemoryMap([Region(0, 4 * MiB, 0), Region(4 * MiB, 4 * MiB, 8 * MiB)]);
        Assert.Multiple(() =>
        {
            Assert.That(map.TryGetRegion(4 * MiB - 4096, 4096, out HostMemoryRegion first), Is.True);
            Assert.That(first.GuestAddress, Is.Zero);
            Assert.That(map.TryGetRegion(4 * MiB - 4096, 8192, out _), Is.False, "it spans two regions, though they touch");
            Assert.That(map.TryGetRegion(8 * MiB, 1, out _), Is.False);
            Assert.That(map.TryGetRegion(0, 0, out _), Is.False);
            Assert.That(map.TryGetRegion(ulong.MaxValue, 2, out _), Is.False);
        });
    }

    [Test]
    public void ASliceIsTheRegionsHostMemoryAtTheGuestOffset()
    {
        var map = new GuestMemoryMap([Region(4 * MiB, 4 * MiB, 8 * MiB)]);
        map.Slice(4 * MiB + 4096, 8).Fill(0x5A);
        Assert.Multiple(() =>
        {
            Assert.That(_backing.ReadUInt64(8 * MiB + 4096), Is.EqualTo(0x5A5A5A5A5A5A5A5AUL));
            Assert.That(() => map.Slice(0, 8), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => map.Slice(8 * MiB - 4, 8), Throws.InstanceOf<ArgumentOutOfRangeException>());
        });
    }

    [Test]
    public void AViewIsOneRegionAtAddressZero()
    {
        var map = new GuestMemoryMap(new GuestMemoryView(_backing.Address, 16 * MiB));
        Assert.That(map.Regions.Single(), Is.EqualTo(new HostMemoryRegion(_backing.Address, 0, 16 * MiB)));
    }
}
