// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Migration;

/// <summary>
/// The writer's switch to post-copy (format version 4 with data connections): the discard records and the post-copy
/// record in place of the end. After it the connections are post-copy's (<c>PostCopySource</c>).
/// </summary>
public sealed partial class PageStreamWriter
{
    /// <summary>Whether the header offers post-copy (with data connections only: the push needs a connection of its own).</summary>
    internal bool OfferPostCopy { get; init; }

    /// <summary>
    /// Ends the pre-copy stream with a switch to post-copy: each data connection's end record, the pages not valid at
    /// the destination (written after they were sent) as discard records, then the post-copy record, which carries
    /// the end record's totals and chain. Call it with the guest stopped for good and the state written.
    /// </summary>
    /// <param name="discarded">The pages the destination must not trust: sorted runs that do not overlap.</param>
    /// <param name="cancellationToken">Cancels the flush.</param>
    /// <exception cref="InvalidOperationException">The stream has no data connection, or ended.</exception>
    /// <exception cref="ArgumentException">The runs are not sorted, or overlap, or one is empty.</exception>
    internal async ValueTask WritePostCopyAsync(IReadOnlyList<DirtyRun> discarded, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_ended, this);
        if (_dataConnections is not { } connections)
        {
            throw new InvalidOperationException("Post-copy pushes pages on the data connections: the stream has none.");
        }

        ulong end = 0;
        foreach (DirtyRun run in discarded)
        {
            if (run.PageCount == 0 || run.FirstPage < end)
            {
                throw new ArgumentException("The discarded pages are sorted runs that do not overlap.", nameof(discarded));
            }

            end = run.EndPage;
        }

        await EndDataConnectionsAsync(connections, cancellationToken).ConfigureAwait(false);
        WriteRegionChanges(PlanRegions());
        for (int first = 0; first < discarded.Count; first += MaxDiscardRuns)
        {
            int count = Math.Min(MaxDiscardRuns, discarded.Count - first);
            int total = RecordBytes + count * DiscardRunBytes;
            Span<byte> span = _output.GetSpan(total);
            ulong pages = 0;
            for (int i = 0; i < count; i++)
            {
                DirtyRun run = discarded[first + i];
                Span<byte> entry = span.Slice(RecordBytes + i * DiscardRunBytes, DiscardRunBytes);
                BinaryPrimitives.WriteUInt64LittleEndian(entry, run.FirstPage);
                BinaryPrimitives.WriteUInt64LittleEndian(entry[8..], run.PageCount);
                pages += run.PageCount;
            }

            WriteRecord(span, Discard, (uint)count, pages);
            uint crc = Crc(HeaderCrc(span), span[RecordBytes..total]);
            WriteCrc(span, crc);
            _chain = System.Numerics.BitOperations.Crc32C(_chain, crc);
            _output.Advance(total);
            _bytesWritten += total;
        }

        await WriteStreamEndAsync(PageStreamFormat.PostCopy, cancellationToken).ConfigureAwait(false);
    }
}
