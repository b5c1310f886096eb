// Licensed under the MIT License. See LICENSE in the repository root.

using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// The regions a source announces, read by a destination: each checked before a page of it is written, against the
/// other regions and against the destination's own memory; and an older source's stream of one region.
/// </summary>
[TestFixture]
public class PageStreamRegionTests
{
    private const ulong MiB = 1UL << 20;
    private AnonymousMapping _backing = null!;

    [SetUp]
    public void SetUp() => _backing = new AnonymousMapping(256 * MiB);

    [TearDown]
    public void TearDown() => _backing.Dispose();

    /// <summary>A destination of pages [0, 64) and [128, 192), host memory at the guest offset.</summary>
    private GuestMemoryMap TwoRegions() => new([Region(0, 64), Region(128, 64)]);

    private HostMemoryRegion Region(ulong firstPage, ulong pages) => new(_backing.Address + (nint)(firstPage * 4096), firstPage * 4096, pages * 4096);

    private static async Task<PageStreamSummary> ReadAsync(byte[] stream, GuestMemoryMap memory) =>
        await new PageStreamReader(PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(stream)), memory).ReadToEndAsync(CancellationToken.None);

    [Test]
    public async Task AnOlderSourcesStreamIsOneRegionAtAddressZero()
    {
        byte[] stream = new HandMadeStream(64, PageStreamFormat.VersionWithoutRegions).Zeros(0, 64).RoundEnd(1).End(64).ToArray();
        _backing.WriteUInt64(4096 * 10, 0xDEAD);

        PageStreamSummary summary = await ReadAsync(stream, new GuestMemoryMap([Region(0, 64)]));

        Assert.Multiple(() =>
        {
            Assert.That(summary.ZeroPages, Is.EqualTo(64));
            Assert.That(_backing.ReadUInt64(4096 * 10), Is.Zero, "its zero pages were applied");
        });
    }

    [Test]
    public async Task RegionsWithAHoleAreAppliedWhereTheDestinationHasThem()
    {
        _backing.WriteUInt64(4096 * 130, 0xDEAD);
        _backing.WriteUInt64(4096 * 100, 0xBEEF); // in the hole: no region, never written
        byte[] stream = new HandMadeStream(128).Added(0, 64).Added(128, 64).Zeros(0, 64).Zeros(128, 64).RoundEnd(1).End(128).ToArray();

        PageStreamSummary summary = await ReadAsync(stream, TwoRegions());

        Assert.Multiple(() =>
        {
            Assert.That(summary.ZeroPages, Is.EqualTo(128));
            Assert.That(_backing.ReadUInt64(4096 * 130), Is.Zero);
            Assert.That(_backing.ReadUInt64(4096 * 100), Is.EqualTo(0xBEEF));
        });
    }

    [TestCase("overlap", "overlaps one announced before")]
    [TestCase("empty", "a region of 0 pages")]
    [TestCase("past the space", "past the 64-bit guest-physical space")]
    [TestCase("pages before the regions", "came before the regions of the header's")]
    [TestCase("regions beyond the header", "not inside one region of the destination's memory")]
    [TestCase("region in the hole", "not inside one region of the destination's memory")]
    [TestCase("region across the hole", "not inside one region of the destination's memory")]
    [TestCase("pages outside", "beyond the regions of memory the source announced")]
    [TestCase("pages across two regions", "beyond the regions of memory the source announced")]
    [TestCase("unknown removal", "that was not announced")]
    [TestCase("removal of part", "that was not announced")]
    [TestCase("pages after removal", "beyond the regions of memory the source announced")]
    public void AHostileRegionRecordIsRefusedBeforeAPageOfItIsWritten(string fault, string message)
    {
        _backing.WriteUInt64(4096 * 140, 0xDEAD); // a page no refused stream may clear
        HandMadeStream stream = fault switch
        {
            "overlap" => new HandMadeStream(128).Added(0, 64).Added(32, 64),
            "empty" => new HandMadeStream(64).Added(0, 0),
            "past the space" => new HandMadeStream(64).Added((ulong.MaxValue / 4096) - 8, 64),
            "pages before the regions" => new HandMadeStream(128).Added(128, 64).Zeros(140, 1),
            "regions beyond the header" => new HandMadeStream(64).Added(128, 64).Added(192, 64).Zeros(140, 1),
            "region in the hole" => new HandMadeStream(16).Added(64, 16),
            "region across the hole" => new HandMadeStream(128).Added(0, 128),
            "pages outside" => new HandMadeStream(32).Added(128, 32).Zeros(160, 1),
            "pages across two regions" => new HandMadeStream(64).Added(128, 32).Added(160, 32).Zeros(140, 32),
            "unknown removal" => new HandMadeStream(64).Added(128, 64).Removed(0, 64),
            "removal of part" => new HandMadeStream(64).Added(128, 64).Removed(128, 32),
            "pages after removal" => new HandMadeStream(64).Added(128, 32).Added(160, 32).Removed(128, 32).Zeros(140, 1),
            _ => throw new System.ArgumentException(fault),
        };

        byte[] bytes = stream.RoundEnd(1).End(1).ToArray();
        Assert.That(async () => await ReadAsync(bytes, TwoRegions()), Throws.TypeOf<PageStreamException>().With.Message.Contains(message).And.Message.Contains("stream offset"));
        Assert.That(_backing.ReadUInt64(4096 * 140), Is.EqualTo(0xDEAD));
    }

    [Test]
    public void MoreRegionsThanAnyGuestHasAreRefused()
    {
        // Every other page a region of one page: the destination has them all; the count alone is refused.
        int count = PageStreamFormat.MaxRegions + 1;
        var stream = new HandMadeStream((ulong)count);
        for (int i = 0; i < count; i++)
        {
            stream.Added((ulong)i * 2, 1);
        }

        byte[] bytes = stream.RoundEnd(1).End(0).ToArray();
        var memory = new GuestMemoryMap([new HostMemoryRegion(_backing.Address, 0, 256 * MiB)]);
        Assert.That(async () => await ReadAsync(bytes, memory), Throws.TypeOf<PageStreamException>().With.Message.Contains("more than the 32,768 allowed"));
    }

    [Test]
    public async Task ARegionPluggedInAgainWhereThisReaderWroteIsNotTakenForFreshMemory()
    {
        // Memory that starts zeroed lets the reader skip zero pages it never wrote; a region unplugged and plugged in
        // again at the same place still holds what the reader wrote there before, and its zero pages must clear it.
        byte[] page = new byte[4096];
        new System.Random(1).NextBytes(page);
        byte[] stream = new HandMadeStream(128).Added(0, 64).Added(128, 64).Data(140, page).RoundEnd(1)
            .Removed(128, 64).Added(128, 64).Zeros(128, 64).RoundEnd(2).End(65).ToArray();
        var reader = new PageStreamReader(PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(stream)), TwoRegions()) { MemoryStartsZeroed = true };

        await reader.ReadToEndAsync(CancellationToken.None);

        Assert.That(_backing.ReadUInt64(4096 * 140), Is.Zero, "the page the source now has as zero");
    }

    [Test]
    public async Task ARemovedRegionIsLeftOutOfTheSummaryAndTheRestStillApplies()
    {
        _backing.WriteUInt64(4096 * 10, 0xDEAD);
        _backing.WriteUInt64(4096 * 150, 0xBEEF);
        byte[] stream = new HandMadeStream(128).Added(0, 64).Added(128, 64).Removed(128, 64).Zeros(0, 64).RoundEnd(1).End(64).ToArray();

        PageStreamSummary summary = await ReadAsync(stream, TwoRegions());

        Assert.Multiple(() =>
        {
            Assert.That(summary.ZeroPages, Is.EqualTo(64));
            Assert.That(_backing.ReadUInt64(4096 * 10), Is.Zero);
            Assert.That(_backing.ReadUInt64(4096 * 150), Is.EqualTo(0xBEEF), "nothing is written to a region let go of");
        });
    }
}
