// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.IO;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration;
using DirtyLog.Migration.PostCopy;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.PostCopy;

/// <summary>A destination's page request as the source reads it: round-tripped, and each malformed one refused.</summary>
[TestFixture]
public class PostCopyRequestFormatTests
{
    [TestCase(0UL)]
    [TestCase(12_345UL)]
    [TestCase(1UL << 40)]
    [TestCase(PostCopyFormat.Done)]
    public async Task ARequestReadsBackAsWritten(ulong page)
    {
        byte[] bytes = new byte[PostCopyFormat.RequestBytes];
        PostCopyFormat.WriteRequest(bytes, page);
        Assert.That(await PostCopyFormat.ReadRequestAsync(Reader(bytes), CancellationToken.None), Is.EqualTo(page));
    }

    [Test]
    public async Task AConnectionThatEndsBetweenRequestsReadsNull() =>
        Assert.That(await PostCopyFormat.ReadRequestAsync(Reader([]), CancellationToken.None), Is.Null);

    [TestCase(0, 0x5851_4C44u, TestName = "another magic")]
    [TestCase(4, 1u, TestName = "the reserved word after the magic set")]
    [TestCase(16, 1u, TestName = "the reserved last word set")]
    public void AMalformedRequestIsRefused(int offset, uint value)
    {
        byte[] bytes = new byte[PostCopyFormat.RequestBytes];
        PostCopyFormat.WriteRequest(bytes, 5);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(offset), value);
        Assert.ThrowsAsync<PageStreamException>(async () => await PostCopyFormat.ReadRequestAsync(Reader(bytes), CancellationToken.None));
    }

    [Test]
    public void ARequestCutShortIsRefused() =>
        Assert.ThrowsAsync<PageStreamException>(async () => await PostCopyFormat.ReadRequestAsync(Reader(new byte[PostCopyFormat.RequestBytes - 1]), CancellationToken.None));

    private static PipeReader Reader(byte[] bytes) => PipeReader.Create(new MemoryStream(bytes));
}
