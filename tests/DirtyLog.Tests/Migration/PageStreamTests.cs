// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Testing;
using DirtyLog.Migration;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>The page stream: round trips, zero pages, and every validation the reader makes.</summary>
[TestFixture]
public class PageStreamTests
{
    private const ulong Pages = 64;
    private const ulong Bytes = Pages * 4096;

    private EmulatedGuestMemory _source = null!;
    private EmulatedGuestMemory _destination = null!;

    [SetUp]
    public void CreateMemory()
    {
        _source = new EmulatedGuestMemory(Bytes);
        _destination = new EmulatedGuestMemory(Bytes);
    }

    [TearDown]
    public void DisposeMemory()
    {
        _source.Dispose();
        _destination.Dispose();
    }

    /// <summary>A valid two-round stream over the source memory.</summary>
    internal static byte[] ValidStream(EmulatedGuestMemory source)
    {
        var random = new Random(5);
        for (ulong page = 0; page < Pages; page += 2)
        {
            var bytes = new byte[4096];
            random.NextBytes(bytes);
            source.Write(page * 4096, bytes); // odd pages stay zero
        }

        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0)); // the reader runs after the writer: no back-pressure
        var writer = new PageStreamWriter(pipe.Writer, source.AsView());
        writer.WriteRoundAsync([new DirtyRun(0, Pages)], CancellationToken.None).AsTask().Wait();
        writer.WriteRoundAsync([new DirtyRun(3, 5), new DirtyRun(40, 2)], CancellationToken.None).AsTask().Wait();
        writer.WriteEndAsync(CancellationToken.None).AsTask().Wait();
        pipe.Writer.Complete();
        return ReadAll(pipe.Reader);
    }

    internal static byte[] ReadAll(PipeReader reader)
    {
        using var stream = new System.IO.MemoryStream();
        reader.AsStream().CopyTo(stream);
        return stream.ToArray();
    }

    internal static async Task<PageStreamSummary> ReadAsync(byte[] stream, GuestMemoryView destination)
    {
        PipeReader input = PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(stream));
        return await new PageStreamReader(input, destination).ReadToEndAsync(CancellationToken.None);
    }

    [Test]
    public async Task ARoundTripCopiesEveryPageAndSendsZeroPagesWithoutData()
    {
        byte[] stream = ValidStream(_source);
        PageStreamSummary summary = await ReadAsync(stream, _destination.AsView());
        Assert.Multiple(() =>
        {
            Assert.That(_destination.AsView().Slice(0, (int)Bytes).SequenceEqual(_source.AsView().Slice(0, (int)Bytes)), Is.True);
            Assert.That(summary.Rounds, Is.EqualTo(2));
            Assert.That(summary.DataPages, Is.EqualTo(32 + 2 + 1UL), "even pages have data");
            Assert.That(summary.ZeroPages, Is.EqualTo(32 + 3 + 1UL), "odd pages are sent as a count");
            Assert.That(stream.Length, Is.LessThan((int)((32 + 4) * 4096) + 2048), "zero pages cost no data");
        });
    }

    [Test]
    public async Task ZeroPagesClearStaleDataAtTheDestination()
    {
        byte[] stream = ValidStream(_source);
        _destination.WriteUInt64(1 * 4096, 0xDEAD);
        await ReadAsync(stream, _destination.AsView());
        Assert.That(_destination.ReadUInt64(4096), Is.Zero);
    }

    private static byte[] Corrupt(byte[] stream, Action<byte[]> change)
    {
        byte[] copy = (byte[])stream.Clone();
        change(copy);
        return copy;
    }

    // The header, then the one region the source has, then the first round's first record.
    private static int FirstDataOffset => 48;

    [TestCase("magic", "not a page stream")]
    [TestCase("version", "version 9 is not supported")]
    [TestCase("page size", "page size 8192")]
    [TestCase("memory", "do not fit")]
    [TestCase("kind", "unknown record kind 77")]
    [TestCase("reserved", "reserved bytes")]
    [TestCase("count", "of 0 pages")]
    [TestCase("bounds", "beyond the regions of memory the source announced (64 pages)")]
    [TestCase("data crc", "checksum")]
    [TestCase("truncated", "ended early")]
    [TestCase("no end", "ended early")]
    [TestCase("dropped record", "does not match the records received")]
    public void EveryKindOfBadStreamIsRefusedWithWhatAndWhere(string fault, string message)
    {
        byte[] good = ValidStream(_source);
        byte[] bad = fault switch
        {
            "magic" => Corrupt(good, s => s[0] ^= 1),
            "version" => Corrupt(good, s => s[4] = 9),
            "page size" => Corrupt(good, s => BinaryPrimitives.WriteUInt32LittleEndian(s.AsSpan(8), 8192)),
            "memory" => Corrupt(good, s => BinaryPrimitives.WriteUInt64LittleEndian(s.AsSpan(16), Bytes * 2)),
            "kind" => Corrupt(good, s => s[FirstDataOffset] = 77),
            "reserved" => Corrupt(good, s => s[FirstDataOffset + 2] = 1),
            "count" => Corrupt(good, s => BinaryPrimitives.WriteUInt32LittleEndian(s.AsSpan(FirstDataOffset + 4), 0)),
            "bounds" => Corrupt(good, s => BinaryPrimitives.WriteUInt64LittleEndian(s.AsSpan(FirstDataOffset + 8), Pages)),
            "data crc" => Corrupt(good, s => s[FirstDataOffset + 24 + 100] ^= 0x40),
            "truncated" => good[..(FirstDataOffset + 24 + 1000)],
            "no end" => good[..^24],
            "dropped record" => DropSecondRoundEnd(good),
            _ => throw new ArgumentException(fault),
        };

        Assert.That(async () => await ReadAsync(bad, _destination.AsView()), Throws.TypeOf<PageStreamException>().With.Message.Contains(message).And.Message.Contains("stream offset"));
    }

    private static byte[] DropSecondRoundEnd(byte[] stream)
    {
        // The last two records are the second round's end and the end marker: drop a zero-page record before them
        // and renumber nothing; only the chained checksum can tell.
        int end = stream.Length - 24, roundEnd = end - 24, before = roundEnd - 24;
        Assert.That(stream[before], Is.EqualTo(2), "a zero-page record precedes the round end");
        byte[] result = [.. stream[..before], .. stream[roundEnd..]];
        BinaryPrimitives.WriteUInt64LittleEndian(result.AsSpan(result.Length - 24 + 8), BinaryPrimitives.ReadUInt64LittleEndian(stream.AsSpan(end + 8)) - BinaryPrimitives.ReadUInt32LittleEndian(stream.AsSpan(before + 4)));
        return result;
    }

    [Test]
    public void AWriterRefusesRunsOutsideMemoryBeforeWritingAnything()
    {
        var pipe = new Pipe();
        var writer = new PageStreamWriter(pipe.Writer, _source.AsView());
        Assert.That(async () => await writer.WriteRoundAsync([new DirtyRun(Pages - 1, 2)], CancellationToken.None), Throws.InstanceOf<ArgumentOutOfRangeException>());
        Assert.That(writer.BytesWritten, Is.Zero);
    }

    [Test]
    public async Task AMemoryDigestSentAfterTheEndProvesTheCopyAndCatchesAPageThatWasNeverSent()
    {
        for (ulong page = 0; page < Pages; page++)
        {
            _source.WriteUInt64(page * 4096, page + 1);
        }

        byte[] Stream(bool missWrite)
        {
            var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
            var writer = new PageStreamWriter(pipe.Writer, _source.AsView());
            writer.WriteRoundAsync([new DirtyRun(0, Pages)], CancellationToken.None).AsTask().Wait();
            if (missWrite)
            {
                _source.WriteUInt64(7 * 4096, 0xBAD); // written after its round and never sent: a lost page
            }

            writer.WriteEndAsync(CancellationToken.None).AsTask().Wait();
            writer.WriteMemoryDigestAsync(CancellationToken.None).AsTask().Wait();
            pipe.Writer.Complete();
            return ReadAll(pipe.Reader);
        }

        async Task<PageStreamSummary> ReadAndVerify(byte[] bytes, EmulatedGuestMemory destination)
        {
            var reader = new PageStreamReader(PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(bytes)), destination.AsView());
            PageStreamSummary atEnd = await reader.ReadToEndAsync(CancellationToken.None);
            Assert.That(atEnd.MemoryVerified, Is.False, "not before the digest is read");
            destination.WriteUInt64(9 * 4096, 0x600D); // the resumed guest runs: the digest is of memory as at the end
            return await reader.VerifyMemoryDigestAsync(CancellationToken.None);
        }

        using var first = new EmulatedGuestMemory(Bytes);
        PageStreamSummary good = await ReadAndVerify(Stream(missWrite: false), first);
        Assert.That(good.MemoryVerified, Is.True);
        using var second = new EmulatedGuestMemory(Bytes);
        Assert.That(async () => await ReadAndVerify(Stream(missWrite: true), second),
            Throws.TypeOf<PageStreamException>().With.Message.Contains("differs from the source's"));
    }

    [Test]
    public async Task TheReaderReturnsAtTheEndAndLeavesWhatFollowsToTheVmm()
    {
        byte[] stream = [.. ValidStream(_source), .. "VMM!"u8.ToArray()];
        PipeReader input = PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(stream));
        var reader = new PageStreamReader(input, _destination.AsView());
        PageStreamSummary summary = await reader.ReadToEndAsync(CancellationToken.None);
        ReadResult rest = await input.ReadAsync();
        Assert.Multiple(() =>
        {
            Assert.That(summary.Bytes, Is.EqualTo(stream.Length - 4));
            Assert.That(System.Buffers.BuffersExtensions.ToArray(rest.Buffer), Is.EqualTo("VMM!"u8.ToArray()), "the bytes after the end are the VMM's");
            Assert.That(async () => await reader.ReadToEndAsync(CancellationToken.None), Throws.InvalidOperationException, "once");
        });
    }

    [Test]
    public async Task StateRecordsTravelByNameChecksummedAndChained()
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var writer = new PageStreamWriter(pipe.Writer, _source.AsView());
        await writer.WriteRoundAsync([new DirtyRun(0, Pages)], CancellationToken.None);
        byte[] registers = [.. Enumerable.Range(0, 456).Select(i => (byte)i)];
        await writer.WriteStateAsync("vcpu0", registers, CancellationToken.None);
        await writer.WriteStateAsync("nic-a/queues", Array.Empty<byte>(), CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(async () => await writer.WriteStateAsync("vcpu0", registers, CancellationToken.None), Throws.ArgumentException.With.Message.Contains("written already"));
            Assert.That(async () => await writer.WriteStateAsync(new string('x', 256), registers, CancellationToken.None), Throws.ArgumentException);
            Assert.That(async () => await writer.WriteStateAsync("big", new byte[(16 << 20) + 1], CancellationToken.None), Throws.InstanceOf<ArgumentOutOfRangeException>());
        });
        await writer.WriteEndAsync(CancellationToken.None);
        pipe.Writer.Complete();
        byte[] stream = ReadAll(pipe.Reader);

        PageStreamSummary summary = await ReadAsync(stream, _destination.AsView());
        Assert.Multiple(() =>
        {
            Assert.That(summary.States.Keys, Is.EquivalentTo(new[] { "vcpu0", "nic-a/queues" }));
            Assert.That(summary.States["vcpu0"].ToArray(), Is.EqualTo(registers));
            Assert.That(summary.States["nic-a/queues"].Length, Is.Zero);
        });

        // A flipped byte of the state is caught by its checksum.
        int at = stream.AsSpan().IndexOf("vcpu0"u8) + 5 + 100;
        byte[] bad = Corrupt(stream, s => s[at] ^= 1);
        Assert.That(async () => await ReadAsync(bad, _destination.AsView()), Throws.TypeOf<PageStreamException>().With.Message.Contains("state record"));
    }

    [Test]
    public async Task TheDestinationAcknowledgesEachRoundAndTheEndAndTheSourceWaitsForThem()
    {
        var forward = new Pipe();
        var back = new Pipe();
        var writer = new PageStreamWriter(forward.Writer, _source.AsView());
        var acks = new PageStreamAcknowledgements(back.Reader);
        Task ackLoop = acks.RunAsync(CancellationToken.None);
        var reader = new PageStreamReader(forward.Reader, _destination.AsView()) { Acknowledgements = back.Writer };
        Task<PageStreamSummary> destination = reader.ReadToEndAsync(CancellationToken.None).AsTask();

        await writer.WriteRoundAsync([new DirtyRun(0, Pages)], CancellationToken.None);
        TimeSpan first = await acks.WaitForRoundAsync(1, CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(acks.AppliedRound, Is.EqualTo(1));
            Assert.That(acks.EndApplied, Is.False);
            Assert.That(acks.WaitForRoundAsync(2, CancellationToken.None).IsCompleted, Is.False, "round 2 is not sent yet");
        });

        await writer.WriteRoundAsync([new DirtyRun(3, 2)], CancellationToken.None);
        await writer.WriteEndAsync(CancellationToken.None);
        TimeSpan end = await acks.WaitForEndAsync(CancellationToken.None);
        await destination;
        await back.Writer.CompleteAsync();
        await ackLoop;
        Assert.Multiple(() =>
        {
            Assert.That(end, Is.GreaterThanOrEqualTo(first));
            Assert.That(acks.EndApplied, Is.True);
            Assert.That(acks.AppliedBytes, Is.EqualTo(writer.BytesWritten), "the destination had read every byte");
        });
    }

    [Test]
    public async Task WaitersFailWhenTheDestinationGoesAwayOrSendsSomethingElse()
    {
        var back = new Pipe();
        var acks = new PageStreamAcknowledgements(back.Reader);
        Task ackLoop = acks.RunAsync(CancellationToken.None);
        Task<TimeSpan> waiting = acks.WaitForEndAsync(CancellationToken.None);
        await back.Writer.WriteAsync(new byte[24]); // not "DLAK"
        Assert.That(async () => await waiting, Throws.TypeOf<PageStreamException>().With.Message.Contains("not a page stream acknowledgement"));
        Assert.That(async () => await ackLoop, Throws.TypeOf<PageStreamException>());
        Assert.That(async () => await acks.WaitForRoundAsync(5, CancellationToken.None), Throws.TypeOf<PageStreamException>(), "later waiters too");
    }
}
