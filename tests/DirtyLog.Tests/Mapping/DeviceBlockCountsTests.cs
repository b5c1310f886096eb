// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using DirtyLog.Mapping;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Mapping;

/// <summary>The 1 GiB device blocks: counted per mapping, dropped with their last mapping, joined into ranges.</summary>
[TestFixture]
public class DeviceBlockCountsTests
{
    private const ulong GiB = DeviceBlockCounts.BlockSize;

    [Test]
    public void AMappingCountsInEveryBlockItTouchesAndABlockGoesWithItsLastMapping()
    {
        var blocks = new DeviceBlockCounts();
        blocks.Add(GiB - 4096, 8192);          // straddles blocks 0 and 1
        blocks.Add(GiB + (512UL << 20), 4096); // block 1 again
        Assert.Multiple(() =>
        {
            Assert.That((blocks[0], blocks[1], blocks.Count), Is.EqualTo((1, 2, 2)));
            Assert.That(blocks.NewBlocks(GiB, 2 * GiB), Is.EqualTo(new ulong[] { 2 }));
        });

        blocks.Remove(GiB - 4096, 8192);
        Assert.That((blocks[0], blocks[1], blocks.Count), Is.EqualTo((0, 1, 1)));
        blocks.Remove(GiB + (512UL << 20), 4096);
        Assert.That(blocks.Count, Is.Zero);
    }

    [Test]
    public void RangesJoinNeighboursAndIncludeTheBlocksAboutToBeAdded()
    {
        var blocks = new DeviceBlockCounts();
        blocks.Add(0, 4096);
        blocks.Add(5 * GiB, 4096);
        Assert.Multiple(() =>
        {
            Assert.That(blocks.Ranges(), Is.EqualTo(new[] { new AddressRange(0, GiB), new AddressRange(5 * GiB, GiB) }));
            Assert.That(blocks.Ranges([1, 4]), Is.EqualTo(new[] { new AddressRange(0, 2 * GiB), new AddressRange(4 * GiB, 2 * GiB) }));
            Assert.That(blocks.Count, Is.EqualTo(2), "ranges with extra blocks change nothing");
        });
    }

    [Test]
    public void RemovingWhatWasNeverCountedIsRefusedAndChangesNothing()
    {
        var blocks = new DeviceBlockCounts();
        blocks.Add(0, 4096);
        Assert.Throws<InvalidOperationException>(() => blocks.Remove(0, GiB + 4096));
        Assert.That(blocks[0], Is.EqualTo(1));
    }

    [Test]
    public void TheLastBlockOfTheSixtyFourBitSpaceDoesNotWrap()
    {
        ulong last = ulong.MaxValue - 4095;
        Assert.That(DeviceBlockCounts.BlocksOf(last, 4096).ToArray(), Is.EqualTo(new[] { ulong.MaxValue / GiB }));
        Assert.That(DeviceBlockCounts.BlocksOf(0, 0), Is.Empty);
    }
}
