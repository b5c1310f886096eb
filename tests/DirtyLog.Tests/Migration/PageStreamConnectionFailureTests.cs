// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// The destination's reader over a real loopback TCP connection that fails under it: a reset in the middle of a
/// record, and an acknowledgement written to a peer that is gone. Both end as the documented
/// <see cref="PageStreamException"/>, with the connection's own error inside, never as a raw <see cref="IOException"/>.
/// </summary>
[TestFixture]
[Category("Unit")]
public class PageStreamConnectionFailureTests
{
    private const ulong Pages = 64;
    private const ulong Bytes = Pages * 4096;

    private static async Task<(Socket Source, Socket Destination)> ConnectAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var source = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Task connect = source.ConnectAsync(listener.LocalEndPoint!);
        Socket destination = await listener.AcceptAsync();
        await connect;
        return (source, destination);
    }

    private static byte[] OneRoundStream(AnonymousMapping memory)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var writer = new PageStreamWriter(pipe.Writer, new GuestMemoryView(memory.Address, memory.Length));
        writer.WriteRoundAsync([new DirtyRun(0, Pages)], CancellationToken.None).AsTask().GetAwaiter().GetResult();
        writer.WriteEndAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        pipe.Writer.Complete();
        return PageStreamTests.ReadAll(pipe.Reader);
    }

    [Test]
    public async Task AConnectionResetInTheMiddleOfARecordIsAPageStreamException()
    {
        using var source = new AnonymousMapping(Bytes);
        for (ulong page = 0; page < Pages; page++)
        {
            source.WriteUInt64(page * 4096, page + 1);
        }

        byte[] stream = OneRoundStream(source);
        (Socket sender, Socket receiver) = await ConnectAsync();
        using (receiver)
        {
            await sender.SendAsync(stream.AsMemory(0, stream.Length / 2), SocketFlags.None);
            sender.LingerState = new LingerOption(true, 0); // close with a reset, not a clean end
            sender.Close();

            using var destination = new AnonymousMapping(Bytes);
            await using var network = new NetworkStream(receiver, ownsSocket: false);
            var reader = new PageStreamReader(PipeReader.Create(network), new GuestMemoryView(destination.Address, destination.Length));
            var e = Assert.ThrowsAsync<PageStreamException>(async () => await reader.ReadToEndAsync(CancellationToken.None));
            Assert.Multiple(() =>
            {
                Assert.That(e!.InnerException, Is.InstanceOf<IOException>().Or.InstanceOf<SocketException>(), "the connection's own error is kept");
                Assert.That(e.Message, Does.Contain("connection failed").Or.Contain("ended early"), e.Message);
                Assert.That(e.Offset, Is.GreaterThan(0));
            });
        }
    }

    [Test]
    public async Task AnAcknowledgementToAPeerThatIsGoneIsAPageStreamException()
    {
        using var source = new AnonymousMapping(Bytes);
        byte[] stream = OneRoundStream(source);
        (Socket sender, Socket receiver) = await ConnectAsync();
        using (receiver)
        {
            await sender.SendAsync(stream, SocketFlags.None);
            sender.LingerState = new LingerOption(true, 0);
            sender.Close(); // the source is gone before the destination acknowledges anything

            using var destination = new AnonymousMapping(Bytes);
            await using var network = new NetworkStream(receiver, ownsSocket: false);
            var reader = new PageStreamReader(PipeReader.Create(new MemoryStream(stream)), new GuestMemoryView(destination.Address, destination.Length))
            {
                // Writing to a reset connection fails (ECONNRESET or EPIPE) at the first flush.
                Acknowledgements = PipeWriter.Create(network),
            };
            var e = Assert.ThrowsAsync<PageStreamException>(async () => await reader.ReadToEndAsync(CancellationToken.None));
            Assert.Multiple(() =>
            {
                Assert.That(e!.InnerException, Is.InstanceOf<IOException>().Or.InstanceOf<SocketException>());
                Assert.That(e.Message, Does.Contain("acknowledgement"));
            });
        }
    }
}
