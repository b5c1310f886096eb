// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Linq;
using System.IO;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// The destination's side of the page stream as a VMM uses it: zero pages on fresh memory, and the end's
/// acknowledgement sent only once the guest runs.
/// </summary>
[TestFixture]
public class PageStreamDestinationTests
{
    private const ulong Pages = 256;
    private const ulong Bytes = Pages * 4096;

    [Test]
    public async Task ZeroPagesOnFreshMemoryAreNeverFaultedInWhenTheVmmSaysItStartsZeroed()
    {
        using var source = new AnonymousMapping(Bytes);
        source.WriteUInt64(7 * 4096, 0x1234); // one page of data, the rest zero
        byte[] stream = Stream(source, [new DirtyRun(0, Pages)]);

        using var promised = new AnonymousMapping(Bytes);
        await Read(stream, promised, startsZeroed: true);
        using var checkedEach = new AnonymousMapping(Bytes);
        await Read(stream, checkedEach, startsZeroed: false);

        Assert.Multiple(() =>
        {
            Assert.That(PresentPages(promised), Is.EqualTo(1), "only the data page is in memory");
            Assert.That(promised.ReadUInt64(7 * 4096), Is.EqualTo(0x1234UL));
            Assert.That(PresentPages(checkedEach), Is.EqualTo(Pages), "without the promise each zero page is read to check it");
        });
    }

    [Test]
    public async Task APageTheReaderWroteIsClearedWhenALaterRoundSaysItIsZero()
    {
        using var source = new AnonymousMapping(Bytes);
        for (ulong page = 0; page < Pages; page += 3)
        {
            source.WriteUInt64((page * 4096) + 8, page + 1);
        }

        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var writer = new PageStreamWriter(pipe.Writer, View(source));
        await writer.WriteRoundAsync([new DirtyRun(0, Pages)], CancellationToken.None);
        for (ulong page = 0; page < Pages; page += 6)
        {
            source.WriteUInt64((page * 4096) + 8, 0); // every other data page becomes zero again
        }

        await writer.WriteRoundAsync([new DirtyRun(0, Pages)], CancellationToken.None);
        await writer.WriteEndAsync(CancellationToken.None);
        uint digest = await writer.WriteMemoryDigestAsync(CancellationToken.None);
        await pipe.Writer.CompleteAsync();

        using var destination = new AnonymousMapping(Bytes);
        var reader = new PageStreamReader(pipe.Reader, View(destination)) { MemoryStartsZeroed = true };
        await reader.ReadToEndAsync(CancellationToken.None);
        PageStreamSummary summary = await reader.VerifyMemoryDigestAsync(CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(summary.MemoryVerified, Is.True, $"digest 0x{digest:x8}");
            Assert.That(View(destination).Slice(0, (int)Bytes).SequenceEqual(View(source).Slice(0, (int)Bytes)), Is.True);
        });
    }

    [Test]
    public async Task TheVmmsPromiseIsTakenAsGivenWhereTheDefaultClearsReusedMemory()
    {
        using var source = new AnonymousMapping(Bytes);
        source.WriteUInt64(0, 1);
        byte[] stream = Stream(source, [new DirtyRun(0, Pages)]);

        using var promised = new AnonymousMapping(Bytes);
        promised.WriteUInt64(9 * 4096, 0xdead); // not fresh: a previous guest's byte
        await Read(stream, promised, startsZeroed: true);
        using var reused = new AnonymousMapping(Bytes);
        reused.WriteUInt64(9 * 4096, 0xdead);
        await Read(stream, reused, startsZeroed: false);
        Assert.Multiple(() =>
        {
            Assert.That(promised.ReadUInt64(9 * 4096), Is.EqualTo(0xdeadUL), "promised fresh: the page is not even read");
            Assert.That(reused.ReadUInt64(9 * 4096), Is.Zero, "by default a zero page that is not zero is cleared");
        });
    }

    [Test]
    public async Task ADeferredEndIsAcknowledgedOnlyWhenTheVmmSaysTheGuestRunsAndOnlyOnce()
    {
        using var source = new AnonymousMapping(Bytes);
        using var destination = new AnonymousMapping(Bytes);
        var forward = new Pipe();
        var back = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var writer = new PageStreamWriter(forward.Writer, View(source));
        var reader = new PageStreamReader(forward.Reader, View(destination)) { Acknowledgements = back.Writer, DeferEndAcknowledgement = true };
        Assert.That(async () => await reader.AcknowledgeEndAsync(CancellationToken.None), Throws.InvalidOperationException, "nothing to acknowledge yet");

        Task<PageStreamSummary> read = reader.ReadToEndAsync(CancellationToken.None).AsTask();
        await writer.WriteRoundAsync([new DirtyRun(0, Pages)], CancellationToken.None);
        await writer.WriteEndAsync(CancellationToken.None);
        await read;
        Assert.That(Acknowledged(back.Reader), Is.EqualTo(new ulong[] { 1 }), "the round, not the end: the guest does not run yet");

        await reader.AcknowledgeEndAsync(CancellationToken.None);
        await reader.AcknowledgeEndAsync(CancellationToken.None); // once only: a second call sends nothing
        Assert.That(Acknowledged(back.Reader), Is.EqualTo(new ulong[] { ulong.MaxValue }), "the end, once");

        // And the source's side reads it as the end.
        var acks = new PageStreamAcknowledgements(PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(Ack(ulong.MaxValue))));
        Assert.That(async () => await acks.RunAsync(CancellationToken.None), Throws.Nothing);
        Assert.That(acks.EndApplied, Is.True);
    }

    /// <summary>The rounds acknowledged so far on the back channel (the end is 2^64 - 1), consumed.</summary>
    private static ulong[] Acknowledged(PipeReader back)
    {
        Assert.That(back.TryRead(out ReadResult result), Is.True, "acknowledgements were flushed");
        byte[] bytes = result.Buffer.ToArray();
        back.AdvanceTo(result.Buffer.End);
        Assert.That(bytes.Length % 24, Is.Zero, "whole 24-byte acknowledgements");
        return [.. Enumerable.Range(0, bytes.Length / 24).Select(i => BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan((i * 24) + 8)))];
    }

    private static byte[] Ack(ulong round)
    {
        var ack = new byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(ack, 0x4B41_4C44); // "DLAK"
        BinaryPrimitives.WriteUInt64LittleEndian(ack.AsSpan(8), round);
        return ack;
    }

    [Test]
    public async Task TheDigestCheckSendsADeferredEndFirstSoTheSourceCanSendTheDigest()
    {
        using var source = new AnonymousMapping(Bytes);
        using var destination = new AnonymousMapping(Bytes);
        var forward = new Pipe();
        var back = new Pipe();
        var writer = new PageStreamWriter(forward.Writer, View(source));
        var acks = new PageStreamAcknowledgements(back.Reader);
        Task ackLoop = acks.RunAsync(CancellationToken.None);
        var reader = new PageStreamReader(forward.Reader, View(destination)) { Acknowledgements = back.Writer, DeferEndAcknowledgement = true };

        async Task Source()
        {
            await writer.WriteRoundAsync([new DirtyRun(0, Pages)], CancellationToken.None);
            await writer.WriteEndAsync(CancellationToken.None);
            await acks.WaitForEndAsync(CancellationToken.None); // as a source does: the digest after the switch-over
            await writer.WriteMemoryDigestAsync(CancellationToken.None);
        }

        Task sending = Source();
        await reader.ReadToEndAsync(CancellationToken.None);
        PageStreamSummary verified = await reader.VerifyMemoryDigestAsync(CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        await sending;
        await back.Writer.CompleteAsync();
        await ackLoop;
        Assert.That(verified.MemoryVerified, Is.True);
    }

    private static GuestMemoryView View(AnonymousMapping mapping) => new(mapping.Address, mapping.Length);

    private static byte[] Stream(AnonymousMapping source, DirtyRun[] round)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var writer = new PageStreamWriter(pipe.Writer, View(source));
        writer.WriteRoundAsync(round, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        writer.WriteEndAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        pipe.Writer.Complete();
        return PageStreamTests.ReadAll(pipe.Reader);
    }

    private static async Task Read(byte[] stream, AnonymousMapping destination, bool startsZeroed)
    {
        var reader = new PageStreamReader(PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(stream)), View(destination)) { MemoryStartsZeroed = startsZeroed };
        await reader.ReadToEndAsync(CancellationToken.None);
    }

    /// <summary>Pages of the mapping with a page-table entry (/proc/self/pagemap bit 63), the shared zero page included.</summary>
    private static ulong PresentPages(AnonymousMapping mapping)
    {
        using FileStream pagemap = File.OpenRead("/proc/self/pagemap");
        var entries = new byte[(int)(mapping.Length / 4096) * 8];
        pagemap.Position = (long)((ulong)mapping.Address / 4096 * 8);
        pagemap.ReadExactly(entries);
        ulong present = 0;
        for (int i = 0; i < entries.Length; i += 8)
        {
            present += BitConverter.ToUInt64(entries, i) >> 63;
        }

        return present;
    }
}
