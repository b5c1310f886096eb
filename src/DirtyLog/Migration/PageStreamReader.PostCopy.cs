// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Migration;

/// <summary>
/// The reader's side of a switch to post-copy (format version 4, granted in the header's acceptance): the discard
/// records, then the post-copy record in place of the end. The connections are then post-copy's, positioned just
/// after what the stream carried.
/// </summary>
public sealed partial class PageStreamReader
{
    private readonly List<DirtyRun> _discarded = [];
    private ulong _discardEnd; // the end of the last discarded run: runs come sorted and do not overlap

    /// <summary>Whether the stream's header offers post-copy.</summary>
    internal bool PostCopyOffered { get; private set; }

    /// <summary>Whether this reader grants post-copy when the header offers it and data connections are granted (the push needs one).</summary>
    internal bool AllowPostCopy { get; init; }

    /// <summary>Whether post-copy was granted in the header's acceptance.</summary>
    internal bool PostCopyGranted { get; private set; }

    /// <summary>
    /// Once the stream ended with a switch to post-copy: the pages the source wrote after it sent them, which are not
    /// valid here; <see langword="null"/> for a stream that ended with its end record (or has not ended).
    /// </summary>
    internal IReadOnlyList<DirtyRun>? PostCopyDiscards { get; private set; }

    /// <summary>The data connections' pipes, in index order, each positioned after its end record once the stream ended.</summary>
    internal IReadOnlyList<PipeReader> DataConnectionInputs => Array.ConvertAll(_dataConnections, r => r._input);

    /// <summary>Tells the source that post-copy started: the guest runs here, and page requests follow on the acknowledgements' direction.</summary>
    internal ValueTask AcknowledgePostCopyAsync(CancellationToken cancellationToken) => AcknowledgeAsync(PostCopyStarted, cancellationToken);

    /// <summary>A discard record: its runs checked (sorted, not overlapping, inside the regions announced), kept, and chained.</summary>
    private async ValueTask ReadDiscardAsync(byte[] record, uint count, ulong pages, uint crc, CancellationToken cancellationToken)
    {
        if (!PostCopyGranted)
        {
            throw Fail("a post-copy discard record, but post-copy was not granted");
        }

        if (count is 0 or > MaxDiscardRuns)
        {
            throw Fail($"a post-copy discard record of {count} runs (1 to {MaxDiscardRuns} allowed)");
        }

        int total = RecordBytes + (int)count * DiscardRunBytes;
        ReadOnlySequence<byte> buffered = await NeedAsync(total, $"the {count} runs of a post-copy discard record", cancellationToken).ConfigureAwait(false);
        byte[] body = buffered.Slice(RecordBytes, total - RecordBytes).ToArray();
        CheckCrc(Crc(HeaderCrc(record), body), crc, "post-copy discard record");
        ulong sum = 0;
        var runs = new DirtyRun[count];
        for (int i = 0; i < runs.Length; i++)
        {
            ulong first = BinaryPrimitives.ReadUInt64LittleEndian(body.AsSpan(i * DiscardRunBytes));
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(body.AsSpan(i * DiscardRunBytes + 8));
            if (length == 0 || first < _discardEnd || length > ulong.MaxValue - first)
            {
                throw Fail($"post-copy discard run {i} ({first:N0}+{length:N0}) is empty, wraps, or does not start after the run before it (which ended at page {_discardEnd:N0})");
            }

            if (RegionHolding(first, length) is null)
            {
                throw Fail($"post-copy discard run {first:N0}+{length:N0} is not inside a region of memory the source announced");
            }

            runs[i] = new DirtyRun(first, length);
            _discardEnd = first + length;
            sum += length;
        }

        if (sum != pages)
        {
            throw Fail($"a post-copy discard record says {pages:N0} pages; its runs hold {sum:N0}");
        }

        _discarded.AddRange(runs);
        Chain(crc);
        Consume(total);
    }

    /// <summary>The post-copy record: the data connections' ends, then the totals and chain as an end record's.</summary>
    private async ValueTask ReadPostCopyAsync(uint count, ulong value, uint crc, CancellationToken cancellationToken)
    {
        if (!PostCopyGranted)
        {
            throw Fail("a post-copy record, but post-copy was not granted");
        }

        await ReadStreamEndAsync(count, value, crc, cancellationToken).ConfigureAwait(false);
        PostCopyDiscards = _discarded.ToArray();
    }
}
