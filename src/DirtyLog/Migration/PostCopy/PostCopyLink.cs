// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Linq;
using System.Runtime.Versioning;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Migration.PostCopy;

/// <summary>
/// A post-copy destination's side of the wire: the requests of its <see cref="PostCopyMemory"/> go out on the request
/// connection, and the pages that come back there and on the push connection are checked (bounds, CRC-32C, each
/// connection's chain) and installed. Make it, start the memory with it as its <see cref="IPostCopyPageRequests"/>,
/// then run it.
/// </summary>
/// <remarks>
/// <para>Thread safety: <see cref="IPostCopyPageRequests.Request"/> from the memory's fault thread (it queues);
/// <see cref="RunAsync"/> one run at a time; again only after a run failed. Its tasks: one writes requests, one reads
/// each connection; installs are the memory's (thread-safe). A failure of any fails the run; the guest's threads then
/// wait on their missing pages until a run on new connections (a recovery: the source must then send the memory's
/// <see cref="PostCopyMemory.MissingRuns"/>) asks again for every page in flight at the cut and carries on.
/// </para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed class PostCopyLink : IPostCopyPageRequests
{
    private readonly PostCopyMemory _memory;
    private readonly int _pageSize = Environment.SystemPageSize;
    private readonly Channel<ulong> _requests = Channel.CreateUnbounded<ulong>(); // not single-reader: that one cannot count what is queued
    private int _state; // 0 ready, 1 running, 2 done (succeeded: no run follows)
    private long _answered, _pushed;
    private int _runs;

    /// <summary>A link for <paramref name="memory"/>, which must be started with this link as its requests.</summary>
    /// <param name="memory">The destination's post-copy memory.</param>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    public PostCopyLink(PostCopyMemory memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        _memory = memory;
    }

    /// <summary>Pages that arrived as answers to requests (installed or not: one pushed at once may have come first).</summary>
    public long PagesAnswered => Interlocked.Read(ref _answered);

    /// <summary>Pages that arrived on the push connections.</summary>
    public long PagesPushed => Interlocked.Read(ref _pushed);

    /// <inheritdoc/>
    void IPostCopyPageRequests.Request(ulong page) => _requests.Writer.TryWrite(page);

    /// <summary>
    /// Sends requests and installs pages until every page is valid here and both of the source's connections ended.
    /// </summary>
    /// <param name="requests">The request connection, to the source.</param>
    /// <param name="answers">Its other direction: the pages asked for.</param>
    /// <param name="push">The push connections, at least one.</param>
    /// <param name="cancellationToken">Stops it (the guest's threads then wait on missing pages).</param>
    /// <returns>A task that completes when post-copy is over.</returns>
    /// <exception cref="PageStreamException">A record is damaged, out of place or outside the memory, or a connection ended early.</exception>
    /// <exception cref="InvalidOperationException">It runs already, or a run succeeded.</exception>
    /// <exception cref="ArgumentException">No push connection, or a null one.</exception>
    public async Task RunAsync(PipeWriter requests, PipeReader answers, IReadOnlyList<PipeReader> push, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(requests);
        ArgumentNullException.ThrowIfNull(answers);
        ArgumentNullException.ThrowIfNull(push);
        if (push.Count == 0 || push.Contains(null!))
        {
            throw new ArgumentException("Post-copy's pages are pushed on at least one connection, none of them null.", nameof(push));
        }

        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            throw new InvalidOperationException("A post-copy link runs one run at a time, and again only after a run failed.");
        }

        try
        {
            await RunOnceAsync(requests, answers, push, cancellationToken).ConfigureAwait(false);
            Volatile.Write(ref _state, 2);
        }
        catch
        {
            Volatile.Write(ref _state, 0); // a recovery may run it again
            throw;
        }
    }

    private async Task RunOnceAsync(PipeWriter requests, PipeReader answers, IReadOnlyList<PipeReader> push, CancellationToken cancellationToken)
    {
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task asking = Guard(() => SendRequestsAsync(requests, failed.Token), failed);
        // The installing loops on threads of their own, the requests on the pool (see PostCopyThreads).
        Task answered = PostCopyThreads.Run(() => ReadPages(answers, "the request connection", pushed: false, failed.Token), "DirtyLog post-copy answers", failed);
        var tasks = new List<Task> { asking, answered };
        for (int i = 0; i < push.Count; i++)
        {
            PipeReader connection = push[i];
            string name = push.Count == 1 ? "the push connection" : $"push connection {i}";
            tasks.Add(PostCopyThreads.Run(() => ReadPages(connection, name, pushed: true, failed.Token), $"DirtyLog post-copy {name}", failed));
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    private static Task Guard(Func<Task> work, CancellationTokenSource failed) => Task.Run(async () =>
    {
        try
        {
            await work().ConfigureAwait(false);
        }
        catch
        {
            failed.Cancel(); // one connection's failure is post-copy's
            throw;
        }
    }, CancellationToken.None);

    private async Task SendRequestsAsync(PipeWriter output, CancellationToken cancellationToken)
    {
        _ = _memory.WhenComplete.ContinueWith(_ => _requests.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        if (Interlocked.Increment(ref _runs) > 1)
        {
            // After a cut, first what was asked and not installed: a request or its answer may be lost with the old
            // connection. Those queued are in it; one queued while it is taken is asked twice, and installed once.
            while (_requests.Reader.TryRead(out _))
            {
            }

            foreach (ulong page in _memory.OutstandingRequests())
            {
                PostCopyFormat.WriteRequest(output.GetSpan(PostCopyFormat.RequestBytes), page);
                output.Advance(PostCopyFormat.RequestBytes);
            }

            await output.FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        await foreach (ulong page in _requests.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            PostCopyFormat.WriteRequest(output.GetSpan(PostCopyFormat.RequestBytes), page);
            output.Advance(PostCopyFormat.RequestBytes);
            if (_requests.Reader.Count == 0)
            {
                await output.FlushAsync(cancellationToken).ConfigureAwait(false); // at once: a vCPU waits on it
            }
        }

        PostCopyFormat.WriteRequest(output.GetSpan(PostCopyFormat.RequestBytes), PostCopyFormat.Done);
        output.Advance(PostCopyFormat.RequestBytes);
        await output.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Data and zero-page records, each checked before it is installed, up to the connection's end.</summary>
    private void ReadPages(PipeReader input, string connection, bool pushed, CancellationToken cancellationToken)
    {
        uint chain = ~0u;
        ulong pages = 0;
        ulong memoryPages = _memory.Pages;
        byte[] record = new byte[RecordBytes];
        while (true)
        {
            ReadResult result = PostCopyThreads.ReadAtLeast(input, RecordBytes, cancellationToken);
            if (result.Buffer.Length < RecordBytes)
            {
                input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                throw new PageStreamException($"{connection} ended before its end record", (long)pages);
            }

            result.Buffer.Slice(0, RecordBytes).CopyTo(record);
            byte kind = record[0];
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(4));
            ulong first = BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(8));
            uint crc = ReadCrc(record);
            if (record[1] != 0 || record[2] != 0 || record[3] != 0 || BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(20)) != 0)
            {
                throw new PageStreamException($"{connection}: record kind {kind} has non-zero reserved bytes", (long)pages);
            }

            if (kind == End)
            {
                input.AdvanceTo(result.Buffer.GetPosition(RecordBytes));
                if (count != 0 || first != pages || crc != chain)
                {
                    throw new PageStreamException($"{connection}: its end counts {first:N0} pages with chain 0x{crc:x8}; {pages:N0} with 0x{chain:x8} arrived", (long)pages);
                }

                return;
            }

            int max = kind == Zero ? MaxZeroPages : MaxDataPages(_pageSize);
            if (kind is not (Data or Zero) || count == 0 || count > (uint)max || first >= memoryPages || count > memoryPages - first)
            {
                throw new PageStreamException($"{connection}: record kind {kind} of {count} pages from page {first:N0} (memory has {memoryPages:N0})", (long)pages);
            }

            if (kind == Zero)
            {
                if (HeaderCrc(record) != crc)
                {
                    throw new PageStreamException($"{connection}: a zero-page record's checksum does not match", (long)pages);
                }

                input.AdvanceTo(result.Buffer.GetPosition(RecordBytes));
                _memory.InstallZeroPages(first, count);
            }
            else
            {
                int bytes = (int)count * _pageSize;
                input.AdvanceTo(result.Buffer.Start); // the record again, with its pages
                result = PostCopyThreads.ReadAtLeast(input, RecordBytes + bytes, cancellationToken);
                if (result.Buffer.Length < RecordBytes + bytes)
                {
                    input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                    throw new PageStreamException($"{connection} ended in the pages of a data record", (long)pages);
                }

                byte[] data = ArrayPool<byte>.Shared.Rent(bytes);
                try
                {
                    result.Buffer.Slice(RecordBytes, bytes).CopyTo(data);
                    input.AdvanceTo(result.Buffer.GetPosition(RecordBytes + bytes));
                    uint actual = HeaderCrc(record);
                    for (int offset = 0; offset < bytes; offset += _pageSize)
                    {
                        actual = System.Numerics.BitOperations.Crc32C(actual, PageCrc(data.AsSpan(offset, _pageSize)));
                    }

                    if (actual != crc)
                    {
                        throw new PageStreamException($"{connection}: the data record for pages {first:N0}+{count}: checksum 0x{crc:x8} expected, 0x{actual:x8} computed", (long)pages);
                    }

                    _memory.Install(first, data.AsSpan(0, bytes)); // checked whole before a byte of guest memory is written
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(data);
                }
            }

            chain = System.Numerics.BitOperations.Crc32C(chain, crc);
            pages += count;
            Interlocked.Add(ref pushed ? ref _pushed : ref _answered, count);
        }
    }
}
