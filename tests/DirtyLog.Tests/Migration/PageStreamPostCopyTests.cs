// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.IO;
using System.IO.Pipelines;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// The reader's side of the switch to post-copy, with streams written by hand as a hostile source could send them:
/// the grant in the handshake, and every discard record that lies (unsorted, overlapping, outside memory, miscounted).
/// </summary>
[TestFixture]
public class PageStreamPostCopyTests
{
    private const ulong Pages = 64;

    [Test]
    public async Task AGrantedSwitchEndsTheStreamWithItsDiscardList()
    {
        (PageStreamReader reader, Task<PageStreamSummary> read, uint grant, Exception? _) = await ReadAsync(
            s => s.Discard([(2, 3), (8, 1)]).Discard([(40, 24)]).PostCopy(0), allow: true);
        await read;

        Assert.Multiple(() =>
        {
            Assert.That(grant & PageStreamFormat.PostCopyGranted, Is.Not.Zero, "post-copy granted with the data connection");
            Assert.That(grant & 0xFFFF, Is.EqualTo(1));
            Assert.That(reader.PostCopyDiscards, Is.EqualTo(new[] { new DirtyRun(2, 3), new DirtyRun(8, 1), new DirtyRun(40, 24) }));
        });
    }

    [TestCase("not granted", "post-copy was not granted")]
    [TestCase("overlapping", "does not start after the run before it")]
    [TestCase("unsorted", "does not start after the run before it")]
    [TestCase("outside", "not inside a region")]
    [TestCase("empty run", "is empty")]
    [TestCase("miscounted", "says 9 pages; its runs hold 4")]
    [TestCase("no runs", "of 0 runs")]
    [TestCase("miscounted total", "end marker counts 5 pages")]
    [TestCase("switch not granted", "a post-copy record, but post-copy was not granted")]
    public async Task ALyingSwitchFailsTheStream(string fault, string expected)
    {
        Func<HandMadeStream, HandMadeStream> write = fault switch
        {
            "not granted" => s => s.Discard([(2, 3)]).PostCopy(0),
            "overlapping" => s => s.Discard([(2, 3), (4, 1)]).PostCopy(0),
            "unsorted" => s => s.Discard([(9, 1)]).Discard([(2, 1)]).PostCopy(0),
            "outside" => s => s.Discard([(60, 5)]).PostCopy(0),
            "empty run" => s => s.Discard([(2, 0)]).PostCopy(0),
            "miscounted" => s => s.Discard([(2, 4)], pages: 9).PostCopy(0),
            "no runs" => s => s.Discard([]).PostCopy(0),
            "miscounted total" => s => s.Discard([(2, 3)]).PostCopy(5),
            _ => s => s.PostCopy(0),
        };

        (_, Task<PageStreamSummary> read, uint grant, _) = await ReadAsync(write, allow: fault is not ("not granted" or "switch not granted"));
        PageStreamException? error = Assert.ThrowsAsync<PageStreamException>(async () => await read);
        Assert.That(error!.Message, Does.Contain(expected));
        if (fault == "not granted")
        {
            Assert.That(grant & PageStreamFormat.PostCopyGranted, Is.Zero);
        }
    }

    [Test]
    public void AHeaderWithAnUnknownFlagIsRefused()
    {
        byte[] stream = new HandMadeStream(Pages, PageStreamFormat.VersionWithDataConnections, dataConnections: 1, flags: 2).Added(0, (uint)Pages).ToArray();
        using var mapping = new AnonymousMapping(Pages * 4096);
        var reader = new PageStreamReader(PipeReader.Create(new MemoryStream(stream)), new GuestMemoryView(mapping.Address, Pages * 4096));
        PageStreamException? error = Assert.ThrowsAsync<PageStreamException>(async () => await reader.ReadToEndAsync(CancellationToken.None));
        Assert.That(error!.Message, Does.Contain("non-zero reserved bytes"));
    }

    /// <summary>A stream offering post-copy with one data connection (which carries nothing but its end), read by a reader that allows it or not.</summary>
    private static async Task<(PageStreamReader Reader, Task<PageStreamSummary> Read, uint Grant, Exception? Error)> ReadAsync(
        Func<HandMadeStream, HandMadeStream> write, bool allow)
    {
        var mapping = new AnonymousMapping(Pages * 4096);
        var acknowledgements = new Pipe();
        var connections = System.Threading.Channels.Channel.CreateUnbounded<Stream>();
        byte[] control = write(new HandMadeStream(Pages, PageStreamFormat.VersionWithDataConnections, dataConnections: 1, flags: PageStreamFormat.PostCopyOffered).Added(0, (uint)Pages)).ToArray();
        var reader = new PageStreamReader(PipeReader.Create(new MemoryStream(control)), new GuestMemoryView(mapping.Address, Pages * 4096))
        {
            Acknowledgements = acknowledgements.Writer,
            AcknowledgeHeader = true,
            MaxDataConnections = 1,
            AcceptDataConnection = cancellationToken => connections.Reader.ReadAsync(cancellationToken),
            AllowPostCopy = allow,
        };
        Task<PageStreamSummary> read = Task.Run(async () =>
        {
            try
            {
                return await reader.ReadToEndAsync(CancellationToken.None);
            }
            finally
            {
                await reader.CloseDataConnectionsAsync();
                mapping.Dispose();
            }
        });

        ReadResult result = await acknowledgements.Reader.ReadAtLeastAsync(PageStreamFormat.AckBytes).AsTask().WaitAsync(TimeSpan.FromSeconds(20));
        byte[] ack = System.Buffers.BuffersExtensions.ToArray(result.Buffer.Slice(0, PageStreamFormat.AckBytes));
        acknowledgements.Reader.AdvanceTo(result.Buffer.GetPosition(PageStreamFormat.AckBytes));
        ulong token = BinaryPrimitives.ReadUInt64LittleEndian(ack.AsSpan(16));
        HandMadeStream data = HandMadeStream.DataConnection(0, 1, token);
        connections.Writer.TryWrite(new MemoryStream(data.End(0).ToArray()));
        return (reader, read.WaitAsync(TimeSpan.FromSeconds(20)), BinaryPrimitives.ReadUInt32LittleEndian(ack.AsSpan(4)), null);
    }
}
