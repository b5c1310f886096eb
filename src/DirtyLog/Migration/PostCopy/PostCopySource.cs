// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;

namespace DirtyLog.Migration.PostCopy;

/// <summary>
/// A post-copy source: its guest stopped for good, it answers the destination's page requests on the request
/// connection and pushes every other page the destination lacks on connections of their own (a task each), so that a
/// request never waits behind the push; the push goes on from just after the last page requested (a guest touches pages near the
/// ones it touched), and skips pages answered already.
/// </summary>
/// <remarks>
/// <para>Memory must not change while it runs (the guest is stopped: post-copy's source never resumes). Requests are
/// hostile until checked: one outside the memory fails the run.</para>
/// <para>Thread safety: <see cref="RunAsync"/> once; <see cref="PagesAnswered"/> and <see cref="PagesPushed"/> from
/// any thread. Its two tasks share the pages still to send under one lock, taken around bitmap work only.</para>
/// </remarks>
public sealed class PostCopySource
{
    private const int PushPages = 64; // a push record of at most 256 KiB: an answer on the other connection never waits long for a core

    private readonly GuestMemoryView _memory;
    private readonly int _pageSize;
    private readonly ulong _pages;
    private readonly ulong[] _unsent; // a bit per page the destination lacks and was sent neither way yet; under _gate
    private readonly Lock _gate = new();
    private ulong _cursor;             // where the push goes on; under _gate
    private ulong _left;               // bits set in _unsent; under _gate
    private long _answered, _pushed;
    private int _ran;

    /// <summary>A source of <paramref name="pending"/>, the pages the destination lacks (those dirtied after they were sent, and any never sent).</summary>
    /// <param name="memory">The stopped source's guest memory, from guest-physical address 0.</param>
    /// <param name="pending">The pages to send.</param>
    /// <param name="pageSize">Bytes per page, as the destination's (its system page size).</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The page size breaks the stream's rule, or a run leaves the memory.</exception>
    public PostCopySource(GuestMemoryView memory, IReadOnlyList<DirtyRun> pending, int pageSize = 4096)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(pending);
        PageStreamFormat.CheckPageSize(pageSize, nameof(pageSize));
        _memory = memory;
        _pageSize = pageSize;
        _pages = memory.Size / (ulong)pageSize;
        _unsent = new ulong[(_pages + 63) / 64];
        foreach (DirtyRun run in pending)
        {
            if (run.EndPage > _pages)
            {
                throw new ArgumentOutOfRangeException(nameof(pending), run, $"The run leaves the {_pages:N0} pages of memory.");
            }

            for (ulong page = run.FirstPage; page < run.EndPage; page++)
            {
                ulong mask = 1UL << (int)(page & 63);
                if ((_unsent[page >> 6] & mask) == 0)
                {
                    _unsent[page >> 6] |= mask;
                    _left++;
                }
            }
        }
    }

    /// <summary>Pages sent as answers to requests.</summary>
    public long PagesAnswered => Interlocked.Read(ref _answered);

    /// <summary>Pages pushed.</summary>
    public long PagesPushed => Interlocked.Read(ref _pushed);

    /// <summary>
    /// Answers and pushes until the destination says every page is valid there: each push connection ends once every
    /// pending page went one way or the other, the answers once the destination said done.
    /// </summary>
    /// <param name="requests">The destination's requests.</param>
    /// <param name="answers">The answers, on the request connection's other direction.</param>
    /// <param name="push">The push connections, at least one: they take runs of pages from one cursor.</param>
    /// <param name="cancellationToken">Stops both.</param>
    /// <returns>A task that completes when both ended.</returns>
    /// <exception cref="PageStreamException">A request is damaged or outside the memory, or the requests ended before done.</exception>
    /// <exception cref="InvalidOperationException">It ran already.</exception>
    /// <exception cref="ArgumentException">No push connection, or a null one.</exception>
    public async Task RunAsync(PipeReader requests, PipeWriter answers, IReadOnlyList<PipeWriter> push, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(requests);
        ArgumentNullException.ThrowIfNull(answers);
        ArgumentNullException.ThrowIfNull(push);
        if (push.Count == 0 || push.Contains(null!))
        {
            throw new ArgumentException("Post-copy pushes on at least one connection, none of them null.", nameof(push));
        }

        if (Interlocked.Exchange(ref _ran, 1) != 0)
        {
            throw new InvalidOperationException("A post-copy source runs once.");
        }

        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task answering = Task.Run(() => AnswerAsync(requests, answers, failed), CancellationToken.None);
        var tasks = new List<Task> { answering };
        for (int i = 0; i < push.Count; i++)
        {
            PipeWriter connection = push[i];
            tasks.Add(PostCopyThreads.Run(() => Push(connection, failed.Token), $"DirtyLog post-copy push {i}", failed)); // a thread each: see PostCopyThreads
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    private async Task AnswerAsync(PipeReader requests, PipeWriter answers, CancellationTokenSource failed)
    {
        try
        {
            uint chain = ~0u;
            ulong sent = 0;
            while (true)
            {
                ulong page = await PostCopyFormat.ReadRequestAsync(requests, failed.Token).ConfigureAwait(false)
                    ?? throw new PageStreamException("the destination's requests ended before it said every page is valid there", 0);
                if (page == PostCopyFormat.Done)
                {
                    break;
                }

                if (page >= _pages)
                {
                    throw new PageStreamException($"a request for page {page:N0}, outside the {_pages:N0} pages of memory", 0);
                }

                lock (_gate)
                {
                    if (Clear(page))
                    {
                        _left--;
                    }

                    _cursor = page + 1 == _pages ? 0 : page + 1; // the push goes on near what the guest touches
                }

                // Always answered, even if pushed already: it may still be on its way, and the destination keeps one copy.
                chain = System.Numerics.BitOperations.Crc32C(chain, PostCopyFormat.WritePages(answers, Page(page, 1), page, 1, _pageSize));
                sent++;
                Interlocked.Increment(ref _answered);
                await FlushAsync(answers, failed.Token).ConfigureAwait(false);
            }

            PostCopyFormat.WriteEnd(answers, sent, chain);
            await FlushAsync(answers, failed.Token).ConfigureAwait(false);
        }
        catch
        {
            failed.Cancel();
            throw;
        }
    }

    /// <summary>One push connection's loop; its failure cancels the others through <see cref="PostCopyThreads.Run"/>.</summary>
    private void Push(PipeWriter push, CancellationToken cancellationToken)
    {
        uint chain = ~0u;
        ulong sent = 0;
        while (NextRun(out ulong first, out int count))
        {
            chain = System.Numerics.BitOperations.Crc32C(chain, PostCopyFormat.WritePages(push, Page(first, count), first, count, _pageSize));
            sent += (ulong)count;
            Interlocked.Add(ref _pushed, count);
            if (push.UnflushedBytes >= 1 << 20)
            {
                ThrowIfGone(PostCopyThreads.Flush(push, cancellationToken));
            }
        }

        PostCopyFormat.WriteEnd(push, sent, chain);
        ThrowIfGone(PostCopyThreads.Flush(push, cancellationToken));
    }

    /// <summary>The next run of unsent pages from the cursor (wrapping once), at most <see cref="PushPages"/>, taken.</summary>
    private bool NextRun(out ulong first, out int count)
    {
        lock (_gate)
        {
            first = 0;
            count = 0;
            if (_left == 0)
            {
                return false;
            }

            ulong page = _cursor;
            while (!Test(page))
            {
                page = page + 1 == _pages ? 0 : page + 1;
            }

            first = page;
            while (count < PushPages && page < _pages && Test(page))
            {
                Clear(page);
                count++;
                page++;
            }

            _left -= (ulong)count;
            _cursor = page == _pages ? 0 : page;
            return true;
        }
    }

    private ReadOnlySpan<byte> Page(ulong first, int count) => _memory.Slice(first * (ulong)_pageSize, count * _pageSize);

    private bool Test(ulong page) => (_unsent[page >> 6] & (1UL << (int)(page & 63))) != 0;

    /// <summary>Clears a page's bit; whether it was set.</summary>
    private bool Clear(ulong page)
    {
        ulong mask = 1UL << (int)(page & 63);
        bool was = (_unsent[page >> 6] & mask) != 0;
        _unsent[page >> 6] &= ~mask;
        return was;
    }

    private static async ValueTask FlushAsync(PipeWriter output, CancellationToken cancellationToken) =>
        ThrowIfGone(await output.FlushAsync(cancellationToken).ConfigureAwait(false));

    private static void ThrowIfGone(FlushResult result)
    {
        if (result.IsCanceled || result.IsCompleted)
        {
            throw new OperationCanceledException("The post-copy destination went away.");
        }
    }
}
