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
    private const ulong Pages = 4096;
    private const ulong PageBytes = 4096;

    [SetUp]
    public void NeedsUserfaultfd()
    {
        try
        {
            UserfaultfdContext.CreateMissing().Dispose();
        }
        catch (KernelException e)
        {
            Assume.That(false, $"a userfaultfd that catches faults taken in the kernel is not available: {e.Message}");
        }
    }

    [TestCase(1, false)]
    [TestCase(2, false)]
    [TestCase(1, true)]
    [TestCase(2, true)]
    public async Task GuestThreadsSeeTheSourcesPagesAndKeepTheirOwnWrites(int seed, bool push)
    {
        using var rig = new Rig(seed);
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

        foreach (Thread thread in guest)
        {
            Assert.That(thread.Join(TimeSpan.FromSeconds(60)), Is.True, "a guest thread still waits for a page");
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

        string? judged = rig.Judge(written[0].Union(written[1]).ToHashSet());
        Assert.Multiple(() =>
        {
            Assert.That(wrong, Is.All.Null, "what the guest read while post-copy ran");
            Assert.That(judged, Is.Null, "the memory at the end, page by page");
            Assert.That(statistics.MissingPages, Is.Zero);
            Assert.That(statistics.PagesRequested, Is.GreaterThan(0), "the guest touched pages that were missing");
            Assert.That(statistics.ZeroPagesFilled, Is.GreaterThan(0), "valid zero pages with no memory were filled here, not requested");
            Assert.That(statistics.PagesArrivedTwice, Is.GreaterThan(0), "pages sent again after they were installed were left as they were");
            Assert.That(statistics.RequestLatencyP99, Is.GreaterThanOrEqualTo(statistics.RequestLatencyMedian));
            Assert.That(statistics.BlockedTime, Is.GreaterThan(TimeSpan.Zero));
        });
    }

    [Test]
    public void MisuseIsRefused()
    {
        using var rig = new Rig(3);
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

    /// <summary>
    /// A source's memory and a destination as pre-copy left it: every page but the zero pages (never written there),
    /// and the discarded pages stale (the source wrote them after it sent them; some of those read zero now).
    /// </summary>
    private sealed class Rig : IDisposable
    {
        private readonly AnonymousMapping _source = new(Pages * PageBytes);
        private readonly AnonymousMapping _destination = new(Pages * PageBytes);
        private readonly int _seed;

        public Rig(int seed)
        {
            _seed = seed;
            Source = new GuestMemoryView(_source.Address, Pages * PageBytes);
            Destination = new GuestMemoryView(_destination.Address, Pages * PageBytes);
            var random = new Random(seed);
            var discarded = new List<DirtyRun>();
            for (ulong page = 0; page < Pages; page++)
            {
                bool zero = page % 8 == 3 || page % 40 == 10;
                if (!zero)
                {
                    random.NextBytes(Source.Slice(page * PageBytes, (int)PageBytes));
                }

                bool stale = page % 5 == 0;
                if (stale)
                {
                    random.NextBytes(Destination.Slice(page * PageBytes, (int)PageBytes)); // what was sent before the source wrote it again
                    discarded.Add(new DirtyRun(page, 1));
                }
                else if (!zero)
                {
                    Source.Slice(page * PageBytes, (int)PageBytes).CopyTo(Destination.Slice(page * PageBytes, (int)PageBytes));
                }
            }

            Discarded = [.. discarded];
        }

        public GuestMemoryView Source { get; }

        public GuestMemoryView Destination { get; }

        public DirtyRun[] Discarded { get; }

        /// <summary>What the source sends for a page: its bytes, or a zero page.</summary>
        public void Send(PostCopyMemory memory, ulong page)
        {
            ReadOnlySpan<byte> bytes = Source.Slice(page * PageBytes, (int)PageBytes);
            if (bytes.IndexOfAnyExcept((byte)0) < 0)
            {
                memory.InstallZeroPages(page, 1);
            }
            else
            {
                memory.Install(page, bytes);
            }
        }

        /// <summary>A guest thread: reads pages (each must be the source's, or its own write), writes a word into some.</summary>
        /// <returns>The first wrong page read, or <see langword="null"/>.</returns>
        public string? RunGuest(int thread, Barrier start, HashSet<ulong> written)
        {
            var random = new Random(_seed * 31 + thread);
            start.SignalAndWait();
            for (int i = 0; i < 3000; i++)
            {
                ulong page = (ulong)random.Next((int)Pages / 2) * 2 + (ulong)thread; // each thread its own pages: its writes are its own
                Span<byte> bytes = Destination.Slice(page * PageBytes, (int)PageBytes); // a touch of a missing page waits here
                if (!written.Contains(page) && !bytes.SequenceEqual(Source.Slice(page * PageBytes, (int)PageBytes)))
                {
                    return $"thread {thread} read page {page} unlike the source's";
                }

                if (random.Next(4) == 0)
                {
                    BitConverter.TryWriteBytes(bytes, Marker(page));
                    written.Add(page);
                }
            }

            return null;
        }

        /// <summary>Every page equals the source's, but for the first word of those the guest wrote, which holds its marker.</summary>
        public string? Judge(HashSet<ulong> written)
        {
            for (ulong page = 0; page < Pages; page++)
            {
                Span<byte> here = Destination.Slice(page * PageBytes, (int)PageBytes);
                ReadOnlySpan<byte> there = Source.Slice(page * PageBytes, (int)PageBytes);
                if (written.Contains(page))
                {
                    if (BitConverter.ToUInt64(here) != Marker(page) || !here[8..].SequenceEqual(there[8..]))
                    {
                        return $"page {page}: the guest's write is lost, or the rest of the page is not the source's";
                    }
                }
                else if (!here.SequenceEqual(there))
                {
                    return $"page {page} is not the source's";
                }
            }

            return null;
        }

        public void Dispose()
        {
            _source.Dispose();
            _destination.Dispose();
        }

        private ulong Marker(ulong page) => (page * 0x9E37_79B9_7F4A_7C15UL) ^ (ulong)_seed;
    }
}
