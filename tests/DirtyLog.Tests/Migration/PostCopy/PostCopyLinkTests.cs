// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration;
using DirtyLog.Migration.PostCopy;
using DirtyLog.Native;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.PostCopy;

/// <summary>
/// Post-copy over the wire: a stopped source answers requests on one loopback connection and pushes on another while
/// guest threads on the destination read and write from the start; judged page by page, and against a hostile source.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class PostCopyLinkTests
{
    [SetUp]
    public void NeedsUserfaultfd() => PostCopyRig.RequireUserfaultfd();

    [TestCase(1, false)]
    [TestCase(2, false)]
    [TestCase(3, true)]
    [TestCase(4, true)]
    public async Task TheGuestRunsOnTheDestinationWhileItsMissingPagesAreRequestedAndPushed(int seed, bool holdThePushBack)
    {
        using var rig = new PostCopyRig(seed);
        using var memory = new PostCopyMemory(rig.Destination);
        var link = new PostCopyLink(memory);
        memory.Start(rig.Discarded, link);
        using Connection requests = await Connection.OpenAsync(), push = await Connection.OpenAsync();
        var source = new PostCopySource(rig.Source, rig.Discarded);

        // Held back, the push reaches the destination only once the guest threads are done: every page they touched came by request.
        var pushed = new Pipe();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task forwarding = holdThePushBack ? Task.Run(async () =>
        {
            await release.Task;
            await pushed.Reader.CopyToAsync(push.Source);
        }) : Task.CompletedTask;
        Task sending = source.RunAsync(PipeReader.Create(requests.Source), PipeWriter.Create(requests.Source), [holdThePushBack ? pushed.Writer : PipeWriter.Create(push.Source)], CancellationToken.None);
        Task receiving = link.RunAsync(PipeWriter.Create(requests.Destination), PipeReader.Create(requests.Destination), [PipeReader.Create(push.Destination)], CancellationToken.None);

        string?[] wrong = new string?[2];
        var written = new HashSet<ulong>[] { [], [] };
        using var start = new Barrier(2);
        Thread[] guest = [.. Enumerable.Range(0, 2).Select(t => new Thread(() => wrong[t] = rig.RunGuest(t, start, written[t])))];
        foreach (Thread thread in guest)
        {
            thread.Start();
        }

        if (!guest.All(thread => thread.Join(TimeSpan.FromSeconds(60))))
        {
            // Closing the userfaultfd lets the waiting threads read what is there; only then may the memory go.
            memory.Dispose();
            Array.ForEach(guest, thread => thread.Join());
            Assert.Fail("a guest thread waited for a page for a minute");
        }

        long answeredWhileHeld = source.PagesAnswered;
        ulong requestedWhileHeld = memory.Statistics.PagesRequested;
        release.TrySetResult();
        await Task.WhenAll(sending, receiving).WaitAsync(TimeSpan.FromSeconds(60));
        if (holdThePushBack)
        {
            await pushed.Writer.CompleteAsync();
            await forwarding.WaitAsync(TimeSpan.FromSeconds(10));
        }

        PostCopyStatistics statistics = memory.Statistics;
        bool complete = memory.WhenComplete.IsCompleted;
        memory.Dispose(); // before the judge reads memory in managed code: a page with no memory reads zero now, with no fault to wait on
        string? judged = rig.Judge(written[0].Union(written[1]).ToHashSet());
        ulong pending = (ulong)rig.Discarded.Sum(r => (long)r.PageCount);
        Assert.Multiple(() =>
        {
            Assert.That(wrong, Is.All.Null, "what the guest read while post-copy ran");
            Assert.That(judged, Is.Null, "the memory at the end, page by page");
            Assert.That(statistics.MissingPages, Is.Zero);
            Assert.That(complete, Is.True);
            Assert.That((ulong)(source.PagesAnswered + source.PagesPushed), Is.GreaterThanOrEqualTo(pending), "every pending page went one way or the other");
            Assert.That((ulong)source.PagesPushed, Is.LessThanOrEqualTo(pending));
            if (holdThePushBack)
            {
                Assert.That(requestedWhileHeld, Is.GreaterThan(0), "the guest touched missing pages");
                Assert.That(answeredWhileHeld, Is.EqualTo((long)requestedWhileHeld), "each was asked once and answered");
                Assert.That(statistics.RequestLatencyMedian, Is.GreaterThan(TimeSpan.Zero));
            }
        });
    }

    [TestCase("page outside the memory")]
    [TestCase("damaged page")]
    [TestCase("end before the pages")]
    public async Task AHostileSourceFailsTheLinkAndNothingIsInstalledFromIt(string fault)
    {
        using var rig = new PostCopyRig(4);
        using var memory = new PostCopyMemory(rig.Destination);
        var link = new PostCopyLink(memory);
        memory.Start(rig.Discarded, link);
        var answers = new Pipe();
        var push = new Pipe();
        ulong page = rig.Discarded[0].FirstPage;
        byte[] record = new byte[PageStreamFormat.RecordBytes + 4096];
        byte[] bytes = Enumerable.Repeat((byte)0x77, 4096).ToArray();
        PageStreamFormat.WriteRecord(record, PageStreamFormat.Data, 1, fault == "page outside the memory" ? PostCopyRig.Pages : page);
        bytes.CopyTo(record, PageStreamFormat.RecordBytes);
        uint crc = System.Numerics.BitOperations.Crc32C(PageStreamFormat.HeaderCrc(record), PageStreamFormat.PageCrc(bytes));
        PageStreamFormat.WriteCrc(record, fault == "damaged page" ? crc ^ 1 : crc);
        if (fault == "end before the pages")
        {
            PageStreamFormat.WriteRecord(record, PageStreamFormat.End, 0, 0);
            PageStreamFormat.WriteCrc(record, ~0u);
            await push.Writer.WriteAsync(record.AsMemory(0, PageStreamFormat.RecordBytes));
            await push.Writer.CompleteAsync();
            await answers.Writer.CompleteAsync();
        }
        else
        {
            await push.Writer.WriteAsync(record);
        }

        Exception? error = null;
        try
        {
            await link.RunAsync(new Pipe().Writer, answers.Reader, [push.Reader], CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20));
        }
        catch (Exception e)
        {
            error = e;
        }

        Assert.Multiple(() =>
        {
            Assert.That(error, Is.InstanceOf<PageStreamException>().Or.InstanceOf<OperationCanceledException>(), error?.ToString());
            Assert.That(memory.Statistics.PagesInstalled, Is.Zero, "nothing of it was installed");
            Assert.That(memory.Statistics.MissingPages, Is.EqualTo((ulong)rig.Discarded.Length));
        });
    }

    /// <summary>A loopback TCP pair.</summary>
    private sealed class Connection : IDisposable
    {
        private Connection(NetworkStream source, NetworkStream destination)
        {
            Source = source;
            Destination = destination;
        }

        public NetworkStream Source { get; }

        public NetworkStream Destination { get; }

        public static async Task<Connection> OpenAsync()
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            Task<Socket> accepted = listener.AcceptAsync();
            await client.ConnectAsync(listener.LocalEndPoint!);
            Socket server = await accepted;
            server.NoDelay = true;
            return new Connection(new NetworkStream(client, ownsSocket: true), new NetworkStream(server, ownsSocket: true));
        }

        public void Dispose()
        {
            Source.Dispose();
            Destination.Dispose();
        }
    }
}
