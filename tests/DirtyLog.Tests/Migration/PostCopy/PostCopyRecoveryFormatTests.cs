// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Migration;
using DirtyLog.Migration.PostCopy;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.PostCopy;

/// <summary>
/// Post-copy recovery's two records as the peer reads them: a resume and the destination's missing pages, each
/// round-tripped, and each lie or cut refused before anything is believed.
/// </summary>
[TestFixture]
public class PostCopyRecoveryFormatTests
{
    private const ulong Pages = 4096;

    [Test]
    public async Task AResumeReadsBackAsWritten()
    {
        byte[] bytes = new byte[PostCopyFormat.ResumeBytes];
        PostCopyFormat.WriteResume(bytes, PostCopyFormat.PushRole, 3, 7, 0xFEED_BEEF_0123_4567, 4);
        (PostCopyResume? resume, string? refusal) = await PostCopyFormat.ReadResumeAsync(Reader(bytes), CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(refusal, Is.Null);
            Assert.That(resume, Is.EqualTo(new PostCopyResume(false, 3, 7, 0xFEED_BEEF_0123_4567, 4)));
        });
    }

    [TestCase(0, 0x58u, "magic")]
    [TestCase(4, 2u, "role 2")]
    [TestCase(24, 1u, "reserved")]
    [TestCase(28, 1u, "reserved")]
    public async Task AResumeThatLiesIsRefusedWithItsReason(int offset, uint value, string reason)
    {
        byte[] bytes = new byte[PostCopyFormat.ResumeBytes];
        PostCopyFormat.WriteResume(bytes, PostCopyFormat.ControlRole, 0, 1, 42, 1);
        if (offset == 4)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(offset), (ushort)value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(offset), value);
        }

        (PostCopyResume? resume, string? refusal) = await PostCopyFormat.ReadResumeAsync(Reader(bytes), CancellationToken.None);
        Assert.Multiple(() =>
        {
            Assert.That(resume, Is.Null);
            Assert.That(refusal, Does.Contain(reason));
        });
    }

    [Test]
    public async Task AResumeCutShortIsRefused()
    {
        byte[] bytes = new byte[PostCopyFormat.ResumeBytes];
        PostCopyFormat.WriteResume(bytes, PostCopyFormat.ControlRole, 0, 1, 42, 1);
        (PostCopyResume? resume, string? refusal) = await PostCopyFormat.ReadResumeAsync(Reader(bytes[..20]), CancellationToken.None);
        Assert.That((resume, refusal), Is.EqualTo(((PostCopyResume?)null, "a connection closed after 20 bytes of its resume")));
    }

    [Test]
    public async Task MissingPagesReadBackAsWritten()
    {
        DirtyRun[] runs = [new(0, 1), new(5, 3), new(100, 900), new(Pages - 1, 1)];
        DirtyRun[] read = await PostCopyFormat.ReadMissingAsync(Reader(Missing(runs)), Pages, CancellationToken.None);
        DirtyRun[] none = await PostCopyFormat.ReadMissingAsync(Reader(Missing([])), Pages, CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(read, Is.EqualTo(runs));
            Assert.That(none, Is.Empty);
        });
    }

    [TestCase("out of order", "out of order")]
    [TestCase("overlapping", "overlaps the one before")]
    [TestCase("touching", "touches the one before")]
    [TestCase("empty", "is empty")]
    [TestCase("outside", "leaves the 4,096 pages")]
    [TestCase("past the end", "leaves the 4,096 pages")]
    public void MissingPagesOutOfPlaceAreRefused(string lie, string reason)
    {
        DirtyRun[] runs = lie switch
        {
            "out of order" => [new(10, 1), new(5, 1)],
            "overlapping" => [new(10, 5), new(12, 5)],
            "touching" => [new(10, 5), new(15, 1)],
            "empty" => [new(10, 0)],
            "outside" => [new(Pages, 1)],
            _ => [new(Pages - 2, 3)],
        };

        Assert.That(async () => await PostCopyFormat.ReadMissingAsync(Reader(Missing(runs)), Pages, CancellationToken.None),
            Throws.TypeOf<PageStreamException>().With.Message.Contains(reason));
    }

    [Test]
    public void MissingPagesDamagedOrCutAreRefused()
    {
        byte[] damaged = Missing([new(1, 2)]);
        damaged[^3] ^= 1;
        byte[] manyRuns = Missing([]);
        BinaryPrimitives.WriteUInt64LittleEndian(manyRuns.AsSpan(8), Pages);
        byte[] notMissing = Missing([]);
        notMissing[0] ^= 1;

        Assert.Multiple(() =>
        {
            Assert.That(async () => await PostCopyFormat.ReadMissingAsync(Reader(damaged), Pages, CancellationToken.None),
                Throws.TypeOf<PageStreamException>().With.Message.Contains("checksum does not match"));
            Assert.That(async () => await PostCopyFormat.ReadMissingAsync(Reader(Missing([new(1, 2)])[..30]), Pages, CancellationToken.None),
                Throws.TypeOf<PageStreamException>().With.Message.Contains("cut after 30 of 40 bytes"));
            Assert.That(async () => await PostCopyFormat.ReadMissingAsync(Reader(manyRuns), Pages, CancellationToken.None),
                Throws.TypeOf<PageStreamException>().With.Message.Contains("4,096 runs of missing pages"));
            Assert.That(async () => await PostCopyFormat.ReadMissingAsync(Reader(notMissing), Pages, CancellationToken.None),
                Throws.TypeOf<PageStreamException>().With.Message.Contains("not the destination's missing pages"));
        });
    }

    private static byte[] Missing(DirtyRun[] runs)
    {
        var pipe = new Pipe();
        PostCopyFormat.WriteMissing(pipe.Writer, runs);
        pipe.Writer.FlushAsync().AsTask().GetAwaiter().GetResult();
        pipe.Writer.Complete();
        return pipe.Reader.ReadAtLeastAsync(PostCopyFormat.MissingHeaderBytes + runs.Length * PostCopyFormat.RunBytes).AsTask().GetAwaiter().GetResult().Buffer.ToArray();
    }

    private static PipeReader Reader(byte[] bytes) => PipeReader.Create(new ReadOnlySequence<byte>(bytes));
}
