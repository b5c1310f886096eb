// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration.PostCopy;
using DirtyLog.Native;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.PostCopy;

/// <summary>
/// Post-copy's destination memory on the real kernel's userfaultfd: guest threads read and write pages from the start
/// while missing pages are requested and pushed at once, judged page by page against the source's memory and the
/// guest's own writes, as the kernel's userfaultfd selftest judges its pages.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class PostCopyMemoryTests
{
    private const ulong Pages = PostCopyRig.Pages;
    private const ulong PageBytes = PostCopyRig.PageBytes;

    [SetUp]
    public void NeedsUserfaultfd() => PostCopyRig.RequireUserfaultfd();

    /// <summary>What a recovering source is told to send: exactly the pages not installed, as runs, across word boundaries.</summary>
    [Test]
    public void TheMissingRunsAreThePagesNotInstalledYet()
    {
        using var rig = new PostCopyRig(5, longRun: true);
        using var memory = new PostCopyMemory(rig.Destination);
        memory.Start(rig.Discarded, new RequestChannel());
        DirtyRun[] before = memory.MissingRuns();
        DirtyRun longRun = rig.Discarded.Single(r => r.PageCount > 1);
        rig.Send(memory, longRun.FirstPage + 63); // splits it at a word's last page
        rig.Send(memory, rig.Discarded[0].FirstPage);
        DirtyRun[] after = memory.MissingRuns();
        foreach (DirtyRun run in rig.Discarded)
        {
            for (ulong page = run.FirstPage; page < run.EndPage; page++)
            {
                rig.Send(memory, page);
            }
        }

        var expected = rig.Discarded.Skip(1).SelectMany(r => r == longRun
            ? new[] { new DirtyRun(r.FirstPage, 63), new DirtyRun(r.FirstPage + 64, r.PageCount - 64) }
            : new[] { r }).ToArray();
        Assert.Multiple(() =>
        {
            Assert.That(before, Is.EqualTo(rig.Discarded));
            Assert.That(after, Is.EqualTo(expected));
            Assert.That(memory.MissingRuns(), Is.Empty);
        });
    }

    [TestCase(1, false, false)]
    [TestCase(2, false, false)]
    [TestCase(1, true, false)]
    [TestCase(2, true, false)]
    [TestCase(3, false, true)]
    [TestCase(4, true, true)]
    public async Task GuestThreadsSeeTheSourcesPagesAndKeepTheirOwnWrites(int seed, bool push, bool longRun)
    {
        using var rig = new PostCopyRig(seed, longRun);
        using var memory = new PostCopyMemory(rig.Destination);
        var requests = new RequestChannel();
        memory.Start(rig.Discarded, requests);

        // The source: answers each request, and (with push) sends every discarded page from the start as well.
        using var stop = new CancellationTokenSource();
        Task answering = Task.Run(async () =>
        {
            await foreach (ulong page in requests.Reader.ReadAllAsync(stop.Token))
            {
                rig.Send(memory, page);
            }
        });
        Task pushing = push ? Task.Run(() => rig.Discarded.ToArray().SelectMany(r => Enumerable.Range(0, (int)r.PageCount).Select(i => r.FirstPage + (ulong)i)).ToList().ForEach(p => rig.Send(memory, p))) : Task.CompletedTask;

        // The guest runs here from the start: two threads read pages (each must hold the source's bytes) and write some.
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

        // Whatever the guest never touched arrives by push, or here by request-free sends: then post-copy is over.
        await pushing;
        foreach (DirtyRun run in rig.Discarded)
        {
            for (ulong page = run.FirstPage; page < run.EndPage; page++)
            {
                rig.Send(memory, page);
            }
        }

        await memory.WhenComplete.WaitAsync(TimeSpan.FromSeconds(30));
        await stop.CancelAsync();
        await answering.ContinueWith(_ => { }, TaskScheduler.Default);
        PostCopyStatistics statistics = memory.Statistics;

        memory.Dispose(); // before the judge reads memory in managed code: a page with no memory reads zero now, with no fault to wait on
        string? judged = rig.Judge(written[0].Union(written[1]).ToHashSet());
        Assert.Multiple(() =>
        {
            Assert.That(wrong, Is.All.Null, "what the guest read while post-copy ran");
            Assert.That(judged, Is.Null, "the memory at the end, page by page");
            Assert.That(statistics.MissingPages, Is.Zero);
            if (!push)
            {
                // With the push from the start, the guest may find every page there before it touches it.
                Assert.That(statistics.PagesRequested, Is.GreaterThan(0), "the guest touched pages that were missing");
                Assert.That(statistics.BlockedTime, Is.GreaterThan(TimeSpan.Zero));
            }

            Assert.That(statistics.ZeroPagesFilled, Is.GreaterThan(0), "valid zero pages with no memory were filled here, not requested");
            Assert.That(statistics.PagesArrivedTwice, Is.GreaterThan(0), "pages sent again after they were installed were left as they were");
            Assert.That(statistics.RequestLatencyP99, Is.GreaterThanOrEqualTo(statistics.RequestLatencyMedian));
        });
    }

    [Test]
    public void MisuseIsRefused()
    {
        using var rig = new PostCopyRig(3);
        using var memory = new PostCopyMemory(rig.Destination);
        Assert.Multiple(() =>
        {
            Assert.That(() => memory.Install(0, new byte[PageBytes]), Throws.InvalidOperationException, "before Start");
            Assert.That(() => memory.Start(new[] { new DirtyRun(Pages - 1, 2) }, new RequestChannel()), Throws.InstanceOf<ArgumentOutOfRangeException>());
        });

        memory.Start(rig.Discarded, new RequestChannel());
        Assert.Multiple(() =>
        {
            Assert.That(() => memory.Start(rig.Discarded, new RequestChannel()), Throws.InvalidOperationException);
            Assert.That(() => memory.Install(Pages, new byte[PageBytes]), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => memory.Install(0, new byte[100]), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => new PostCopyMemory(new GuestMemoryView(rig.Destination.Address + 1, PageBytes)), Throws.ArgumentException);
        });

        foreach (DirtyRun run in rig.Discarded)
        {
            for (ulong page = run.FirstPage; page < run.EndPage; page++)
            {
                rig.Send(memory, page);
            }
        }

        Assert.That(memory.WhenComplete.IsCompleted, Is.True);
    }

    /// <summary>Requests queued for the source, as a VMM's request channel would carry them.</summary>
    private sealed class RequestChannel : IPostCopyPageRequests
    {
        private readonly Channel<ulong> _channel = Channel.CreateUnbounded<ulong>();

        public ChannelReader<ulong> Reader => _channel.Reader;

        public void Request(ulong page) => _channel.Writer.TryWrite(page);
    }
}
