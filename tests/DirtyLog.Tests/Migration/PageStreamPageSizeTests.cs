// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Migration;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// Page sizes above 4 KiB: one rule on both sides, 64-bit arithmetic, and only <see cref="PageStreamException"/>
/// for a bad stream.
/// </summary>
[TestFixture]
public class PageStreamPageSizeTests
{
    private const int MiB = 1 << 20;

    [TestCase(0)]
    [TestCase(2048)]
    [TestCase(6000)]
    [TestCase(12288)]
    [TestCase(4 * MiB)]
    [TestCase(1 << 30)]
    [TestCase(int.MaxValue)]
    public void BothSidesRefuseTheSamePageSizes(int pageSize)
    {
        using var memory = new EmulatedGuestMemory(8UL * MiB);
        var pipe = new Pipe();
        Assert.Multiple(() =>
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => _ = new PageStreamWriter(pipe.Writer, memory.AsView(), pageSize));
            Assert.Throws<ArgumentOutOfRangeException>(() => _ = new PageStreamReader(pipe.Reader, memory.AsView(), pageSize));
        });
    }

    [TestCase(4096)]
    [TestCase(64 * 1024)]
    [TestCase(2 * MiB)]
    public async Task LargePagesRoundTripByteForByte(int pageSize)
    {
        const ulong Bytes = 16UL * MiB;
        using var source = new EmulatedGuestMemory(Bytes);
        using var destination = new EmulatedGuestMemory(Bytes);
        var random = new Random(pageSize);
        ulong pages = Bytes / (ulong)pageSize;
        for (ulong page = 0; page < pages; page += 3)
        {
            var bytes = new byte[pageSize];
            random.NextBytes(bytes);
            source.Write(page * (ulong)pageSize, bytes);
        }

        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var writer = new PageStreamWriter(pipe.Writer, source.AsView(), pageSize);
        await writer.WriteRoundAsync([new DirtyRun(0, pages)], CancellationToken.None);
        await writer.WriteEndAsync(CancellationToken.None);
        await writer.WriteMemoryDigestAsync(CancellationToken.None);
        await pipe.Writer.CompleteAsync();
        var reader = new PageStreamReader(pipe.Reader, destination.AsView(), pageSize);
        await reader.ReadToEndAsync(CancellationToken.None);
        PageStreamSummary summary = await reader.VerifyMemoryDigestAsync(CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(summary.DataPages + summary.ZeroPages, Is.EqualTo(pages));
            Assert.That(summary.MemoryVerified, Is.True);
            Assert.That(destination.AsView().Slice(0, (int)Bytes).SequenceEqual(source.AsView().Slice(0, (int)Bytes)), Is.True);
        });
    }

    [TestCase(64 * 1024, 256u)]
    [TestCase(2 * MiB, 2u)]
    [TestCase(2 * MiB, 2048u)]
    [TestCase(4096, 257u)]
    public void ADataRecordLargerThanTheRecordLimitIsABadStream(int pageSize, uint count)
    {
        ulong memoryBytes = 1UL << 32;
        var stream = new byte[24 + 24];
        BinaryPrimitives.WriteUInt32LittleEndian(stream, 0x5350_4C44);
        BinaryPrimitives.WriteUInt16LittleEndian(stream.AsSpan(4), 2);
        BinaryPrimitives.WriteUInt32LittleEndian(stream.AsSpan(8), (uint)pageSize);
        BinaryPrimitives.WriteUInt64LittleEndian(stream.AsSpan(16), memoryBytes);
        stream[24] = 1; // data
        BinaryPrimitives.WriteUInt32LittleEndian(stream.AsSpan(28), count);

        using var destination = new EmulatedGuestMemory(memoryBytes);
        var reader = new PageStreamReader(PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(stream)), destination.AsView(), pageSize);
        Assert.That(async () => await reader.ReadToEndAsync(CancellationToken.None),
            Throws.TypeOf<PageStreamException>().With.Message.Contains("data record of"));
    }
}
