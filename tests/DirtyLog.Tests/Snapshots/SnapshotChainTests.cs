// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Consumers;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Snapshots;
using NUnit.Framework;

namespace DirtyLog.Tests.Snapshots;

/// <summary>
/// A full snapshot and diffs of a memory that changes between them (pages written, a page zeroed), restored into fresh
/// memory and judged byte for byte against the memory they were taken from, and against a full snapshot of it.
/// </summary>
[TestFixture]
[Category("Unit")]
public sealed class SnapshotChainTests
{
    private const ulong MemoryBytes = 4UL << 20;
    private const ulong Pages = MemoryBytes / 4096;

    private byte[] _guest = [];
    private GCHandle _pin;
    private GuestMemoryView _memory = null!;
    private DirtyConsumerSet _consumers = null!;
    private DirtyConsumer _snapshots = null!;

    [SetUp]
    public void CreateGuest()
    {
        _guest = new byte[MemoryBytes];
        _pin = GCHandle.Alloc(_guest, GCHandleType.Pinned);
        _memory = new GuestMemoryView(_pin.AddrOfPinnedObject(), MemoryBytes);
        _consumers = new DirtyConsumerSet(40);
        _snapshots = _consumers.Register("snapshots");
    }

    [TearDown]
    public void FreeGuest()
    {
        _snapshots.Dispose();
        _consumers.Dispose();
        _pin.Free();
    }

    [Test]
    public async Task AFullSnapshotAndItsDiffsRestoreTheLastStateByteForByte()
    {
        var writer = new SnapshotChainWriter(_memory);
        var random = new Random(20261201);
        WriteRandomPages(random, 200);
        TakeChanges(); // the base covers everything; the consumer starts its epoch here
        using var full = new MemoryStream();
        PageStreamSummary baseSummary = await writer.WriteFullAsync(full, States("regs", 1), CancellationToken.None);

        WriteRandomPages(random, 30);
        ZeroPage(17);
        using var diff1 = new MemoryStream();
        PageStreamSummary first = await writer.WriteDiffAsync(diff1, TakeChanges(), States("regs", 2), CancellationToken.None);

        WriteRandomPages(random, 10);
        using var diff2 = new MemoryStream();
        await writer.WriteDiffAsync(diff2, TakeChanges(), States("regs", 3), CancellationToken.None);

        byte[] expected = _guest.ToArray();
        (byte[] restored, PageStreamSummary summary) = await Restore([full, diff1, diff2]);
        Assert.Multiple(() =>
        {
            Assert.That(restored.AsSpan().SequenceEqual(expected), Is.True, "the chain restores memory as it was at the last diff");
            Assert.That(summary.States["regs"].ToArray(), Is.EqualTo(new byte[] { 3 }), "the last link's states");
            Assert.That(summary.States.ContainsKey("dirtylog.snapshot"), Is.False, "the chain's own state is not the VMM's");
            Assert.That(baseSummary.DataPages + baseSummary.ZeroPages, Is.EqualTo(Pages));
            Assert.That(first.DataPages + first.ZeroPages, Is.LessThanOrEqualTo(31), "a diff holds only the pages dirtied since");
            Assert.That(first.ZeroPages, Is.GreaterThanOrEqualTo(1), "the zeroed page travels as a hole");
            Assert.That(writer.NextSequence, Is.EqualTo(3));
        });
    }

    [Test]
    public async Task AChainEqualsAFullSnapshotOfTheSameStateAndADiffThatMissedAPageIsFound()
    {
        var writer = new SnapshotChainWriter(_memory);
        var random = new Random(7);
        WriteRandomPages(random, 100);
        using var full = new MemoryStream();
        await writer.WriteFullAsync(full, null, CancellationToken.None);
        var lossyWriter = new SnapshotChainWriter(_memory);
        using var lossyBase = new MemoryStream();
        await lossyWriter.WriteFullAsync(lossyBase, null, CancellationToken.None);
        TakeChanges();

        WriteRandomPages(random, 20);
        WritePage(300, 0xAB);
        List<DirtyRun> changes = TakeChanges();
        using var diff = new MemoryStream();
        await writer.WriteDiffAsync(diff, changes, null, CancellationToken.None);
        // A second chain from the same base state whose diff leaves page 300 out, as a lost mark would.
        using var lossy = new MemoryStream();
        await lossyWriter.WriteDiffAsync(lossy, changes.FindAll(r => !(r.FirstPage <= 300 && r.EndPage > 300)), null, CancellationToken.None);

        using var now = new MemoryStream();
        await new SnapshotChainWriter(_memory).WriteFullAsync(now, null, CancellationToken.None);
        Rewind(full, diff, now, lossyBase, lossy);
        ulong? same = await SnapshotChain.FindFirstDifferenceAsync([full, diff], now, MemoryBytes, CancellationToken.None);
        Rewind(now);
        ulong? missed = await SnapshotChain.FindFirstDifferenceAsync([lossyBase, lossy], now, MemoryBytes, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(same, Is.Null, "base plus diff equals the full snapshot, byte for byte");
            Assert.That(missed, Is.EqualTo(300UL * 4096), "a diff that left out a written page is caught at that page");
        });
    }

    [Test]
    public async Task ACompactedChainRestoresAsTheChainDoesAndLaterDiffsFollowIt()
    {
        var writer = new SnapshotChainWriter(_memory);
        var random = new Random(11);
        WriteRandomPages(random, 50);
        using var full = new MemoryStream();
        await writer.WriteFullAsync(full, null, CancellationToken.None);
        TakeChanges();
        var diffs = new List<MemoryStream>();
        for (int i = 0; i < 3; i++)
        {
            WriteRandomPages(random, 15);
            var diff = new MemoryStream();
            await writer.WriteDiffAsync(diff, TakeChanges(), States("n", (byte)i), CancellationToken.None);
            diffs.Add(diff);
        }

        using var compacted = new MemoryStream();
        Rewind([full, .. diffs]);
        PageStreamSummary written = await SnapshotChain.CompactAsync([full, .. diffs], MemoryBytes, compacted, CancellationToken.None);
        WriteRandomPages(random, 5);
        using var after = new MemoryStream();
        await writer.WriteDiffAsync(after, TakeChanges(), null, CancellationToken.None);

        byte[] expected = _guest.ToArray();
        (byte[] restored, _) = await Restore([compacted, after]);
        Assert.Multiple(() =>
        {
            Assert.That(restored.AsSpan().SequenceEqual(expected), Is.True);
            Assert.That(written.Bytes, Is.LessThan(full.Length + diffs.Sum(d => d.Length)));
        });
        foreach (MemoryStream d in diffs)
        {
            d.Dispose();
        }
    }

    [TestCase(1UL << 62)]
    [TestCase(0xfffffffffffff000UL)]
    [TestCase(2 * MemoryBytes)]
    [TestCase(MemoryBytes / 2)]
    public async Task CompactingOrComparingWithASizeThatIsNotTheChainsIsRefusedBeforeAnyMemoryIsTaken(ulong memorySize)
    {
        var writer = new SnapshotChainWriter(_memory);
        WriteRandomPages(new Random(3), 20);
        using var full = new MemoryStream();
        await writer.WriteFullAsync(full, null, CancellationToken.None);
        using var other = new MemoryStream(full.ToArray());
        using var compacted = new MemoryStream();
        Rewind(full);
        var compact = Assert.ThrowsAsync<ArgumentException>(async () => await SnapshotChain.CompactAsync([full], memorySize, compacted, CancellationToken.None));
        Rewind(full);
        var compare = Assert.ThrowsAsync<ArgumentException>(async () => await SnapshotChain.FindFirstDifferenceAsync([full], other, memorySize, CancellationToken.None));
        Assert.Multiple(() =>
        {
            Assert.That(compact!.Message, Does.Contain($"{MemoryBytes:N0} bytes of memory"), "the chain's own size is named");
            Assert.That(compact.ParamName, Is.EqualTo("memorySize"));
            Assert.That(compare!.ParamName, Is.EqualTo("memorySize"));
            Assert.That(compacted.Length, Is.Zero, "nothing was written");
        });
    }

    [Test]
    public void ASizeThatIsNoWholeNumberOfPagesIsRefused()
    {
        Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await SnapshotChain.CompactAsync([Stream.Null], 4095, Stream.Null, CancellationToken.None));
        Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await SnapshotChain.FindFirstDifferenceAsync([Stream.Null], Stream.Null, 0, CancellationToken.None));
    }

    [Test]
    public async Task ADiffOfAnotherChainWithTheRightSequenceIsRefusedOnRestoreAndCompaction()
    {
        WriteRandomPages(new Random(5), 20);
        var mine = new SnapshotChainWriter(_memory);
        var theirs = new SnapshotChainWriter(_memory);
        using var myBase = new MemoryStream();
        using var theirBase = new MemoryStream();
        await mine.WriteFullAsync(myBase, null, CancellationToken.None);
        await theirs.WriteFullAsync(theirBase, null, CancellationToken.None);
        TakeChanges();
        WritePage(9, 0x99);
        using var theirDiff = new MemoryStream();
        await theirs.WriteDiffAsync(theirDiff, TakeChanges(), null, CancellationToken.None);

        Rewind(myBase, theirDiff);
        var restore = Assert.ThrowsAsync<InvalidDataException>(async () => await Restore([myBase, theirDiff]));
        Rewind(myBase, theirDiff);
        var compact = Assert.ThrowsAsync<InvalidDataException>(async () => await SnapshotChain.CompactAsync([myBase, theirDiff], MemoryBytes, Stream.Null, CancellationToken.None));
        Rewind(theirBase, theirDiff);
        (byte[] restored, _) = await Restore([theirBase, theirDiff]);
        Assert.Multiple(() =>
        {
            Assert.That(restore!.Message, Does.Contain("another chain"));
            Assert.That(compact!.Message, Does.Contain("another chain"));
            Assert.That(restored[9 * 4096], Is.EqualTo(0x99), "with its own base the diff restores");
        });
    }

    [Test]
    public async Task ADiffOfAForkOfTheChainIsRefusedThoughItsChainAndSequenceMatch()
    {
        // Two writers continue the same link (a chain restored and written on from two places): their diffs share the
        // chain and number on, but each applies only on its own parent.
        WriteRandomPages(new Random(6), 20);
        var writer = new SnapshotChainWriter(_memory);
        using var full = new MemoryStream();
        await writer.WriteFullAsync(full, null, CancellationToken.None);
        TakeChanges();
        Rewind(full);
        using var compacted = new MemoryStream();
        await SnapshotChain.CompactAsync([full], MemoryBytes, compacted, CancellationToken.None); // the same state, continued
        WritePage(1, 1);
        using var d1 = new MemoryStream();
        await writer.WriteDiffAsync(d1, TakeChanges(), null, CancellationToken.None);

        // The fork: the compacted base, continued by a writer of its own, with two diffs.
        Rewind(compacted);
        var forkMemory = new byte[MemoryBytes];
        GCHandle pin = GCHandle.Alloc(forkMemory, GCHandleType.Pinned);
        try
        {
            var forkView = new GuestMemoryView(pin.AddrOfPinnedObject(), MemoryBytes);
            await SnapshotChain.RestoreAsync([compacted], forkView, memoryStartsZeroed: true, CancellationToken.None);
            Rewind(compacted);
            var probe = System.IO.Pipelines.PipeReader.Create(new MemoryStream(compacted.ToArray()));
            PageStreamSummary states = await new PageStreamReader(probe, new GuestMemoryView(pin.AddrOfPinnedObject(), MemoryBytes)).ReadToEndAsync(CancellationToken.None);
            var fork = new SnapshotChainWriter(forkView, continues: SnapshotHeader.Decode(states.States, 0));
            await fork.WriteFullAsync(Stream.Null, null, CancellationToken.None);
            using var f1 = new MemoryStream();
            using var f2 = new MemoryStream();
            forkMemory[2 * 4096] = 2;
            await fork.WriteDiffAsync(f1, [new DirtyRun(2, 1)], null, CancellationToken.None);
            forkMemory[3 * 4096] = 3;
            await fork.WriteDiffAsync(f2, [new DirtyRun(3, 1)], null, CancellationToken.None);

            Rewind(full, f1);
            (byte[] own, _) = await Restore([full, f1]);
            Rewind(full, d1, f2);
            var e = Assert.ThrowsAsync<InvalidDataException>(async () => await Restore([full, d1, f2]));
            Assert.Multiple(() =>
            {
                Assert.That(own[2 * 4096], Is.EqualTo(2), "the fork's first diff applies on the link both continue");
                Assert.That(e!.Message, Does.Contain("fork"));
            });
        }
        finally
        {
            pin.Free();
        }
    }

    [Test]
    public async Task ABrokenChainIsRefusedWithWhatIsWrong()
    {
        var writer = new SnapshotChainWriter(_memory);
        Assert.That(async () => await writer.WriteDiffAsync(new MemoryStream(), [], null, CancellationToken.None),
            Throws.InvalidOperationException.With.Message.Contains("full snapshot"));
        using var full = new MemoryStream();
        await writer.WriteFullAsync(full, null, CancellationToken.None);
        using var diff1 = new MemoryStream();
        await writer.WriteDiffAsync(diff1, [new DirtyRun(1, 1)], null, CancellationToken.None);
        using var diff2 = new MemoryStream();
        await writer.WriteDiffAsync(diff2, [new DirtyRun(2, 1)], null, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(async () => await writer.WriteFullAsync(new MemoryStream(), States("dirtylog.snapshot", 1), CancellationToken.None),
                Throws.ArgumentException.With.Message.Contains("reserved"));
            Assert.That(async () => await Restore([]), Throws.ArgumentException);
            Assert.That(async () => await Restore([diff1, diff2]), Throws.TypeOf<InvalidDataException>().With.Message.Contains("starts with a diff"));
            Assert.That(async () => await Restore([full, diff2]), Throws.TypeOf<InvalidDataException>().With.Message.Contains("expected"));
            Assert.That(async () => await Restore([full, new MemoryStream(full.ToArray())]), Throws.TypeOf<InvalidDataException>().With.Message.Contains("only the first"));
            var truncated = new MemoryStream(diff1.ToArray()[..^10]);
            Assert.That(async () => await Restore([full, truncated]), Throws.TypeOf<PageStreamException>());
        });
    }

    private static async Task<(byte[] Memory, PageStreamSummary Summary)> Restore(Stream[] chain)
    {
        Rewind(chain);
        byte[] target = new byte[MemoryBytes];
        GCHandle pin = GCHandle.Alloc(target, GCHandleType.Pinned);
        try
        {
            PageStreamSummary summary = await SnapshotChain.RestoreAsync(chain, new GuestMemoryView(pin.AddrOfPinnedObject(), MemoryBytes), memoryStartsZeroed: true, CancellationToken.None);
            return (target, summary);
        }
        finally
        {
            pin.Free();
        }
    }

    private static void Rewind(params Stream[] streams)
    {
        foreach (Stream s in streams)
        {
            s.Position = 0;
        }
    }

    private static Dictionary<string, ReadOnlyMemory<byte>> States(string name, byte value) => new() { [name] = new byte[] { value } };

    /// <summary>The tracker's part: a write marks its page, which a round publishes to the consumers.</summary>
    private void WritePage(ulong page, byte value)
    {
        _guest.AsSpan((int)(page * 4096), 4096).Fill(value);
        _consumers.Publish([new DirtyRun(page, 1)]);
    }

    private void ZeroPage(ulong page) => WritePage(page, 0);

    private void WriteRandomPages(Random random, int count)
    {
        for (int i = 0; i < count; i++)
        {
            WritePage((ulong)random.NextInt64((long)Pages), (byte)random.Next(1, 256));
        }
    }

    private List<DirtyRun> TakeChanges()
    {
        var sink = new Infrastructure.RunCollector();
        _snapshots.TakeChanges(ref sink);
        return sink.Runs;
    }
}
