// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;
using DirtyLog.Snapshots;
using NUnit.Framework;

namespace DirtyLog.Tests.Snapshots;

/// <summary>
/// Snapshot links written after resume under write protection: threads keep writing the link's pages while it is
/// written, and the restored chain must equal memory as it was at the protection, byte for byte.
/// </summary>
[TestFixture]
[Category("Kernel")]
[Category("Userfaultfd")]
public sealed class CopyBeforeWriteGuardTests
{
    private const ulong MemoryBytes = 16UL << 20;
    private const ulong Pages = MemoryBytes / 4096;

    private AnonymousMapping _guest = null!;
    private GuestMemoryView _memory = null!;

    [SetUp]
    public void CreateGuest()
    {
        try
        {
            UserfaultfdContext.CreateWriteProtect().Dispose();
        }
        catch (KernelException e)
        {
            Assume.That(false, $"a userfaultfd that catches faults taken in the kernel is not available: {e.Message}");
        }

        _guest = new AnonymousMapping(MemoryBytes);
        _memory = new GuestMemoryView(_guest.Address, MemoryBytes);
        for (ulong page = 0; page < Pages; page += 3)
        {
            Page(page).Fill((byte)(page % 251 + 1)); // a third of the pages hold data, the rest are holes
        }
    }

    [TearDown]
    public void FreeGuest() => _guest?.Dispose();

    /// <summary>
    /// The heart of it: threads write the link's pages all the time it is written; every write to a page not yet copied
    /// must wait for its copy. Several links in a row (a race's window is short); each judged from the restored memory
    /// against a copy of memory taken in its pause.
    /// </summary>
    [TestCase(20261130, false, false)]
    [TestCase(20261131, true, false)]
    [TestCase(20261132, false, true)]
    [TestCase(20261133, true, true)]
    public async Task ALinkWrittenWhileThreadsWriteItsPagesHoldsThemAsTheyWereAtTheProtection(int seed, bool full, bool sequential)
    {
        const int Links = 16;
        using var guard = new CopyBeforeWriteGuard(_memory);
        var writer = new SnapshotChainWriter(_memory);
        List<DirtyRun> diff = Runs(new Random(seed), count: 64, maxLength: 40);
        ulong[] targets = full ? [.. Enumerable.Range(0, (int)Pages).Select(p => (ulong)p)] : [.. diff.SelectMany(r => Enumerable.Range((int)r.FirstPage, (int)r.PageCount).Select(p => (ulong)p))];
        using var writers = new PausableWriters(_memory, seed, threads: 2, targets, sequential);
        writers.Start();
        var failures = new List<string>();
        long copiedBefore = 0;
        for (int link = 0; link < Links; link++)
        {
            writers.Pause(); // the pause: no thread writes now
            using var baseLink = new MemoryStream();
            if (!full)
            {
                await writer.WriteFullAsync(baseLink, null, CancellationToken.None); // the base, in the pause: the diff is what changes from here
                foreach (DirtyRun run in diff)
                {
                    Page(run.FirstPage).Fill((byte)(0xE0 + link)); // the diff's pages are those written since the base: make them so
                }
            }

            byte[] atProtection = Copy(_memory);
            if (full)
            {
                guard.ProtectAll();
            }
            else
            {
                guard.Protect(diff);
            }

            writers.Resume();
            // Before writing, let the threads hit protected pages: a gate on the guard's own count, not a sleep.
            SpinUntil(() => guard.PagesCopiedOnWrite >= copiedBefore + 5, "the writer threads hit protected pages");
            using var written = new MemoryStream();
            PageStreamSummary summary = await writer.WriteProtectedAsync(written, guard, null, CancellationToken.None);
            copiedBefore = guard.PagesCopiedOnWrite;

            byte[] restored = await Restore(full ? [written] : [baseLink, written]);
            if (FirstDifference(restored, atProtection) is { } at)
            {
                failures.Add($"link {link}: the restored memory differs from memory at the protection at byte 0x{at:x} (page {at / 4096})");
            }

            if (summary.DataPages + summary.ZeroPages != (full ? Pages : Sum(diff)))
            {
                failures.Add($"link {link}: {summary.DataPages + summary.ZeroPages} pages written");
            }
        }

        writers.Stop();
        Assert.Multiple(() =>
        {
            Assert.That(failures, Is.Empty, "every link holds memory as it was at its protection");
            Assert.That(guard.HasProtectedLink, Is.False, "the last link is finished");
            Assert.That(writers.Writes, Is.GreaterThan(guard.PagesCopiedOnWrite), "the threads kept writing");
        });
    }

    /// <summary>Deterministic, one thread: a write after resume waits for its page's copy; without the guard it would be in the link.</summary>
    [Test]
    public async Task AWriteAfterResumeDoesNotReachTheLinkWithTheGuardAndDoesWithout()
    {
        Page(5).Fill(0x11);
        var runs = new List<DirtyRun> { new(5, 1), new(9, 2) };

        using var guard = new CopyBeforeWriteGuard(_memory);
        var guarded = new SnapshotChainWriter(_memory);
        await guarded.WriteFullAsync(Stream.Null, null, CancellationToken.None);
        guard.Protect(runs);
        Page(5).Fill(0x22); // after resume: the fault thread copies page 5 first, then lets this write go on
        using var withGuard = new MemoryStream();
        await guarded.WriteProtectedAsync(withGuard, guard, null, CancellationToken.None);

        Page(5).Fill(0x11);
        var unguarded = new SnapshotChainWriter(_memory);
        await unguarded.WriteFullAsync(Stream.Null, null, CancellationToken.None);
        Page(5).Fill(0x22); // the same write, with nothing to hold it: the link is written after it
        using var withoutGuard = new MemoryStream();
        await unguarded.WriteDiffAsync(withoutGuard, runs, null, CancellationToken.None);

        Assert.Multiple(() =>
        {
            Assert.That(PageInLink(withGuard, 5), Is.EqualTo(0x11), "the guarded link holds page 5 as it was at the protection");
            Assert.That(PageInLink(withoutGuard, 5), Is.EqualTo(0x22), "without the guard the later write is in the link");
            Assert.That(guard.PagesCopiedOnWrite, Is.EqualTo(1));
            Assert.That(_memory.Slice(5 * 4096, 4096)[100], Is.EqualTo(0x22), "the write itself went on");
        });
    }

    [Test]
    public async Task AFailedWriteReleasesEveryPageAndTheNextLinkWorks()
    {
        using var guard = new CopyBeforeWriteGuard(_memory);
        var writer = new SnapshotChainWriter(_memory);
        await writer.WriteFullAsync(Stream.Null, null, CancellationToken.None);
        guard.Protect([new DirtyRun(0, 1024)]);
        Assert.ThrowsAsync<IOException>(async () => await writer.WriteProtectedAsync(HookedStream.FailingAfter(1 << 20), guard, null, CancellationToken.None));

        long copied = guard.PagesCopiedOnWrite, faults = guard.FaultsServed;
        for (ulong page = 0; page < 1024; page++)
        {
            Page(page)[7] ^= 1; // no page of the failed link may still be protected
        }

        Assert.Multiple(() =>
        {
            Assert.That(guard.HasProtectedLink, Is.False);
            Assert.That(guard.FaultsServed, Is.EqualTo(faults), "no write faulted: every page was unprotected");
            Assert.That(guard.PagesCopiedOnWrite, Is.EqualTo(copied));
        });

        guard.Protect([new DirtyRun(2, 3)]);
        PageStreamSummary next = await writer.WriteProtectedAsync(Stream.Null, guard, null, CancellationToken.None);
        Assert.That(next.DataPages + next.ZeroPages, Is.EqualTo(3UL), "the guard takes the next link");
    }

    [Test]
    public async Task DisposingDuringAWriteFailsItWithoutTouchingFreedMemoryAndASecondWriterIsRefused()
    {
        var guard = new CopyBeforeWriteGuard(_memory);
        var writer = new SnapshotChainWriter(_memory);
        await writer.WriteFullAsync(Stream.Null, null, CancellationToken.None);
        guard.Protect([new DirtyRun(0, 2048), new DirtyRun(3000, 0)]); // 8 MiB: several chunks and flushes; the empty run is ignored
        Exception? second = null;
        var stream = HookedStream.OnFirstWrite(() =>
        {
            // Mid-link: a second writer is refused (the link is this one's), then the guard goes away.
            second = Assert.ThrowsAsync<InvalidOperationException>(async () => await new SnapshotChainWriter(_memory).WriteProtectedAsync(Stream.Null, guard, null, CancellationToken.None));
            guard.Dispose();
        });

        Assert.ThrowsAsync<ObjectDisposedException>(async () => await writer.WriteProtectedAsync(stream, guard, null, CancellationToken.None));
        Page(1500)[0] ^= 1; // unprotected and unregistered: the write goes through with no fault thread left
        Assert.Multiple(() =>
        {
            Assert.That(second, Is.Not.Null, "the second writer was refused");
            Assert.That(guard.HasProtectedLink, Is.False);
            Assert.That(() => guard.Protect([new DirtyRun(0, 1)]), Throws.TypeOf<ObjectDisposedException>());
        });
    }

    /// <summary>
    /// Dispose racing a write in flight, from another thread, at a seeded moment: the write completes or fails with
    /// ObjectDisposedException, never touches freed memory (which would crash the test host), and leaves memory writable.
    /// </summary>
    [TestCase(11)]
    [TestCase(12)]
    public async Task DisposeRacingAWriteNeverReadsFreedMemory(int seed)
    {
        var random = new Random(seed);
        int completed = 0, disposedFirst = 0;
        for (int i = 0; i < 12; i++)
        {
            var guard = new CopyBeforeWriteGuard(_memory);
            var writer = new SnapshotChainWriter(_memory);
            guard.ProtectAll();
            using var start = new Barrier(2);
            int spins = random.Next(0, 200_000);
            var disposer = new Thread(() =>
            {
                start.SignalAndWait();
                Thread.SpinWait(spins);
                guard.Dispose();
            });
            disposer.Start();
            Task<PageStreamSummary> write = Task.Run(async () =>
            {
                start.SignalAndWait();
                return await writer.WriteProtectedAsync(Stream.Null, guard, null, CancellationToken.None);
            });
            try
            {
                await write;
                completed++;
            }
            catch (ObjectDisposedException)
            {
                disposedFirst++;
            }

            disposer.Join();
            Page((ulong)random.Next((int)Pages))[0] ^= 1; // released and unregistered: no write waits
        }

        Assert.That(completed + disposedFirst, Is.EqualTo(12), $"{completed} writes completed, {disposedFirst} met the dispose");
    }

    [Test]
    public void MemoryAnotherUserfaultfdHasIsRefusedWithEbusyAndNothingLeaks()
    {
        using var first = new CopyBeforeWriteGuard(_memory);
        KernelException? refused = Assert.Throws<KernelException>(() => _ = new CopyBeforeWriteGuard(_memory));
        Assert.That(refused!.Errno, Is.EqualTo(Errno.EBUSY), "one userfaultfd per mapping");
        first.Protect([new DirtyRun(0, 4)]);
        Page(1)[0] ^= 1; // the first guard still serves its link
        Assert.That(first.PagesCopiedOnWrite, Is.EqualTo(3), "page 1, and pages 2 and 3 copied ahead with it (page 4 is not in the link)");
    }

    [Test]
    public void DisposingReleasesALinkInFlightAndTheMemory()
    {
        var guard = new CopyBeforeWriteGuard(_memory);
        guard.Protect([new DirtyRun(0, 64)]);
        guard.Dispose();
        Page(3)[0] = 9; // would wait for good if it stayed protected with no fault thread
        using var again = new CopyBeforeWriteGuard(_memory); // EBUSY if the first still had the memory registered
        Assert.That(guard.FaultsServed, Is.Zero);
    }

    [Test]
    public async Task BadInputIsRefusedWithWhatIsWrong()
    {
        using var guard = new CopyBeforeWriteGuard(_memory);
        using var other = new AnonymousMapping(MemoryBytes);
        var otherWriter = new SnapshotChainWriter(new GuestMemoryView(other.Address, MemoryBytes));
        var writer = new SnapshotChainWriter(_memory);
        Assert.Multiple(() =>
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => guard.Protect([new DirtyRun(Pages - 1, 2)]));
            Assert.Throws<ArgumentException>(() => guard.Protect([new DirtyRun(10, 5), new DirtyRun(4, 7)]));
            Assert.ThrowsAsync<InvalidOperationException>(async () => await writer.WriteProtectedAsync(Stream.Null, guard, null, CancellationToken.None), "nothing protected");
            Assert.Throws<ArgumentException>(() => _ = new CopyBeforeWriteGuard(_memory, pageSize: 6000));
        });
        Assert.That(guard.HasProtectedLink, Is.False, "a refused protection leaves nothing protected");

        guard.Protect([new DirtyRun(1, 1)]);
        Assert.Throws<InvalidOperationException>(() => guard.ProtectAll(), "one link at a time");
        Assert.ThrowsAsync<InvalidOperationException>(async () => await writer.WriteProtectedAsync(Stream.Null, guard, null, CancellationToken.None), "a diff before any full snapshot");
        guard.Protect([new DirtyRun(1, 1)]); // the refused write finished the link
        Assert.ThrowsAsync<ArgumentException>(async () => await otherWriter.WriteProtectedAsync(Stream.Null, guard, null, CancellationToken.None), "another memory's writer");
        Assert.That(guard.HasProtectedLink, Is.False);
        await Task.CompletedTask;
    }

    private unsafe Span<byte> Page(ulong page) => _memory.Slice(page * 4096, 4096);

    private static List<DirtyRun> Runs(Random random, int count, int maxLength)
    {
        var runs = new List<DirtyRun>();
        ulong next = 0;
        for (int i = 0; i < count; i++)
        {
            ulong first = next + (ulong)random.Next(0, 40);
            ulong length = (ulong)random.Next(1, maxLength + 1);
            if (first + length > Pages)
            {
                break;
            }

            runs.Add(new DirtyRun(first, length));
            next = first + length + 1;
        }

        return runs;
    }

    private static ulong Sum(List<DirtyRun> runs)
    {
        ulong pages = 0;
        foreach (DirtyRun run in runs)
        {
            pages += run.PageCount;
        }

        return pages;
    }

    private static byte[] Copy(GuestMemoryView memory)
    {
        byte[] copy = new byte[memory.Size];
        memory.Slice(0, (int)memory.Size).CopyTo(copy);
        return copy;
    }

    private static long? FirstDifference(byte[] actual, byte[] expected)
    {
        int index = actual.AsSpan().CommonPrefixLength(expected);
        return index == expected.Length ? null : index;
    }

    private static void SpinUntil(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(30))
            {
                Assert.Fail($"timed out waiting until {what}");
            }

            Thread.Yield();
        }
    }

    private static async Task<byte[]> Restore(Stream[] chain)
    {
        foreach (Stream link in chain)
        {
            link.Position = 0;
        }

        byte[] target = new byte[MemoryBytes];
        GCHandle pin = GCHandle.Alloc(target, GCHandleType.Pinned);
        try
        {
            await SnapshotChain.RestoreAsync(chain, new GuestMemoryView(pin.AddrOfPinnedObject(), MemoryBytes), memoryStartsZeroed: true, CancellationToken.None);
            return target;
        }
        finally
        {
            pin.Free();
        }
    }

    /// <summary>The first byte of <paramref name="page"/> as a diff link holds it: the link read alone as a page stream into zeroed memory.</summary>
    private static byte PageInLink(MemoryStream link, ulong page)
    {
        byte[] target = new byte[MemoryBytes];
        GCHandle pin = GCHandle.Alloc(target, GCHandleType.Pinned);
        try
        {
            var input = System.IO.Pipelines.PipeReader.Create(new MemoryStream(link.ToArray()));
            new PageStreamReader(input, new GuestMemoryView(pin.AddrOfPinnedObject(), MemoryBytes)).ReadToEndAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
            return target[(int)(page * 4096)];
        }
        finally
        {
            pin.Free();
        }
    }

    /// <summary>
    /// Threads that write whole pages (a seeded choice among <paramref name="targets"/>, the link's pages, so that
    /// writes meet the writer's copy; or the targets in order) until stopped, and park at a barrier on <see cref="Pause"/>.
    /// </summary>
    private sealed class PausableWriters(GuestMemoryView memory, int seed, int threads, ulong[] targets, bool sequential) : IDisposable
    {
        private readonly Barrier _barrier = new(threads + 1);
        private readonly List<Thread> _threads = [];
        private volatile bool _pause;
        private volatile bool _stop;
        private long _writes;

        public long Writes => Interlocked.Read(ref _writes);

        public void Start()
        {
            for (int t = 0; t < threads; t++)
            {
                int id = t;
                var thread = new Thread(() => Run(id)) { IsBackground = true, Name = $"page writer {id}" };
                _threads.Add(thread);
                thread.Start();
            }
        }

        /// <summary>Returns once every thread is parked (none is mid-write).</summary>
        public void Pause()
        {
            _pause = true;
            _barrier.SignalAndWait();
        }

        public void Resume()
        {
            _pause = false;
            _barrier.SignalAndWait();
        }

        public void Stop()
        {
            _stop = true;
            foreach (Thread thread in _threads)
            {
                thread.Join();
            }
        }

        public void Dispose()
        {
            if (!_stop)
            {
                Stop();
            }

            _barrier.Dispose();
        }

        private void Run(int id)
        {
            var random = new Random(seed * 31 + id);
            int next = random.Next(targets.Length);
            while (!_stop)
            {
                if (_pause)
                {
                    _barrier.SignalAndWait(); // parked
                    _barrier.SignalAndWait(); // resumed
                    continue;
                }

                // Random pages, or the targets in order from a random start, as a guest pass does: a sequential writer
                // meets the link's writer in the pages it holds (read in place, or just staged).
                next = sequential ? (next + 1) % targets.Length : random.Next(targets.Length);
                ulong page = targets[next];
                memory.Slice(page * 4096, 4096).Fill((byte)random.Next(1, 256));
                Interlocked.Increment(ref _writes);
            }
        }
    }

    /// <summary>A memory stream that calls <paramref name="beforeWrite"/> (its length so far, the bytes coming) before each write: to fail or act mid-link.</summary>
    private sealed class HookedStream(Action<long, int> beforeWrite) : MemoryStream
    {
        /// <summary>A stream that fails once <paramref name="failAfter"/> bytes were written.</summary>
        public static HookedStream FailingAfter(int failAfter) => new((length, count) =>
        {
            if (length + count > failAfter)
            {
                throw new IOException("the disk is full");
            }
        });

        /// <summary>A stream that calls <paramref name="action"/> on its first write.</summary>
        public static HookedStream OnFirstWrite(Action action)
        {
            Action? once = action;
            return new((_, _) => Interlocked.Exchange(ref once, null)?.Invoke());
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            beforeWrite(Length, count);
            base.Write(buffer, offset, count);
        }

        public override void Write(ReadOnlySpan<byte> buffer) => Write(buffer.ToArray(), 0, buffer.Length);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            Write(buffer, offset, count);
            return Task.CompletedTask;
        }
    }
}
