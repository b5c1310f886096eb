// Licensed under the MIT License. See LICENSE in the repository root.

using System;
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
        writer.WriteEndAsync(includeMemoryDigest: false, CancellationToken.None).AsTask().Wait();
        pipe.Writer.Complete();
        return ReadAll(pipe.Reader);
    }

    private static byte[] ReadAll(PipeReader reader)
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

    private static int FirstDataOffset => 24;

    [TestCase("magic", "not a page stream")]
    [TestCase("version", "version 9 is not supported")]
    [TestCase("page size", "page size 8192")]
    [TestCase("memory", "do not fit")]
    [TestCase("kind", "unknown record kind 77")]
    [TestCase("reserved", "reserved bytes")]
    [TestCase("count", "of 0 pages")]
    [TestCase("bounds", "beyond the 64 pages")]
    [TestCase("data crc", "checksum")]
    [TestCase("truncated", "ended early")]
    [TestCase("no end", "ended early")]
    [TestCase("trailing", "after the end marker")]
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
            "trailing" => [.. good, 0],
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
    public async Task AMemoryDigestProvesTheCopyAndCatchesAPageThatWasNeverSent()
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

            writer.WriteEndAsync(includeMemoryDigest: true, CancellationToken.None).AsTask().Wait();
            pipe.Writer.Complete();
            return ReadAll(pipe.Reader);
        }

        PageStreamSummary good = await ReadAsync(Stream(missWrite: false), _destination.AsView());
        Assert.That(good.MemoryVerified, Is.True);
        Assert.That(async () => await ReadAsync(Stream(missWrite: true), _destination.AsView()),
            Throws.TypeOf<PageStreamException>().With.Message.Contains("differs from the source's"));
    }
}
