// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration.Transport;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.Transport;

/// <summary>
/// The read-ahead under TLS: every byte comes out once and in order (the byte read before TLS first), whatever sizes
/// the reader asks for and the connection hands over; small reads cost few reads of the connection; large and empty
/// reads go to the connection as they are.
/// </summary>
[TestFixture]
public class ReadAheadStreamTests
{
    [TestCase(1, false)]
    [TestCase(2, true)]
    [TestCase(3, false)]
    [TestCase(4, true)]
    public async Task EveryByteComesOutOnceInOrderWithTheByteReadBeforeFirst(int seed, bool asynchronously)
    {
        var random = new Random(seed);
        byte[] sent = new byte[3 << 20];
        random.NextBytes(sent);
        var connection = new TricklingStream(sent.AsMemory(1), random, maxChunk: 70_000);
        using var stream = new ReadAheadStream(connection, bufferSize: 64 * 1024, alreadyRead: sent.AsSpan(0, 1));
        var received = new List<byte>(sent.Length);
        byte[] buffer = new byte[200_000];
        while (true)
        {
            int wanted = random.Next(4) == 0 ? random.Next(64 * 1024, buffer.Length) : random.Next(1, 20_000);
            int read = asynchronously
                ? await stream.ReadAsync(buffer.AsMemory(0, wanted))
                : stream.Read(buffer, 0, wanted);
            if (read == 0)
            {
                break;
            }

            Assert.That(read, Is.LessThanOrEqualTo(wanted));
            received.AddRange(buffer.AsSpan(0, read));
        }

        Assert.That(received.Count, Is.EqualTo(sent.Length));
        Assert.That(received.ToArray().AsSpan().SequenceEqual(sent), Is.True, "the bytes out are the bytes in, in order");
    }

    [Test]
    public async Task SmallReadsAreServedFromFewReadsOfTheConnection()
    {
        byte[] sent = new byte[1 << 20];
        new Random(5).NextBytes(sent);
        var connection = new TricklingStream(sent, new Random(5), maxChunk: int.MaxValue);
        using var stream = new ReadAheadStream(connection, bufferSize: 256 * 1024);
        byte[] record = new byte[4096];
        for (int offset = 0; offset < sent.Length; offset += record.Length)
        {
            await stream.ReadExactlyAsync(record);
            Assert.That(record.AsSpan().SequenceEqual(sent.AsSpan(offset, record.Length)), Is.True, $"at {offset}");
        }

        Assert.That(connection.Reads, Is.EqualTo(4), "256 reads of 4 KiB from four reads of 256 KiB");
        Assert.That(await stream.ReadAsync(record), Is.Zero, "the connection's end");
    }

    [Test]
    public void LargeReadsGoToTheConnectionAndEmptyReadsWaitAsTheConnectionsDo()
    {
        byte[] sent = new byte[1 << 20];
        new Random(6).NextBytes(sent);
        var connection = new TricklingStream(sent, new Random(6), maxChunk: int.MaxValue);
        using var stream = new ReadAheadStream(connection, bufferSize: 64 * 1024);
        byte[] large = new byte[128 * 1024];
        Assert.That(stream.Read(large), Is.EqualTo(large.Length));
        Assert.That(connection.Requested, Is.EqualTo(new[] { large.Length }), "read into the caller's buffer, not copied");

        Assert.That(stream.Read(Span<byte>.Empty), Is.Zero);
        Assert.That(connection.Requested, Has.Count.EqualTo(2).And.Contains(0), "an empty read with nothing buffered is the connection's");
        Assert.That(stream.Read(large, 0, 10), Is.EqualTo(10));
        int reads = connection.Reads;
        Assert.That(stream.Read(Span<byte>.Empty), Is.Zero);
        Assert.That(connection.Reads, Is.EqualTo(reads), "an empty read with bytes buffered returns at once");
        Assert.That(stream.Buffered, Is.EqualTo(64 * 1024 - 10));
    }

    [Test]
    public void AFailedReadLosesNothingAlreadyReturnedAndTheStreamReadsOnAfterIt()
    {
        byte[] sent = new byte[100_000];
        new Random(7).NextBytes(sent);
        var connection = new TricklingStream(sent, new Random(7), maxChunk: int.MaxValue) { FailRead = 2 };
        using var stream = new ReadAheadStream(connection, bufferSize: 64 * 1024);
        byte[] buffer = new byte[64 * 1024 - 1];
        Assert.That(stream.Read(buffer), Is.EqualTo(buffer.Length));
        Assert.That(stream.Read(buffer, 0, 1), Is.EqualTo(1));
        Assert.Throws<IOException>(() => _ = stream.Read(buffer, 0, 100));
        Assert.That(stream.Buffered, Is.Zero);
        Assert.That(stream.Read(buffer, 0, 100), Is.EqualTo(100));
        Assert.That(buffer.AsSpan(0, 100).SequenceEqual(sent.AsSpan(64 * 1024, 100)), Is.True);
    }

    [Test]
    public void ABufferThatCannotHoldTheBytesReadBeforeIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new ReadAheadStream(Stream.Null, bufferSize: 1, alreadyRead: new byte[2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new ReadAheadStream(Stream.Null, bufferSize: 0));
    }

    /// <summary>A connection that hands over a random number of bytes per read (up to what was asked and <c>maxChunk</c>), counting its reads.</summary>
    private sealed class TricklingStream(ReadOnlyMemory<byte> content, Random random, int maxChunk) : Stream
    {
        private int _position;

        public int Reads => Requested.Count;

        public List<int> Requested { get; } = [];

        /// <summary>The read (counted from 1) that throws, as a reset connection does; 0 for none.</summary>
        public int FailRead { get; init; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            Requested.Add(buffer.Length);
            if (Requested.Count == FailRead)
            {
                throw new IOException("connection reset");
            }

            int count = Math.Min(Math.Min(buffer.Length, content.Length - _position), maxChunk == int.MaxValue ? int.MaxValue : random.Next(1, maxChunk));
            content.Span.Slice(_position, count).CopyTo(buffer);
            _position += count;
            return count;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(Read(buffer.Span));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
