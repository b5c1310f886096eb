// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipelines;
using System.Runtime.Versioning;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration;

namespace DirtyLog.Snapshots;

/// <summary>
/// Writes a chain of incremental snapshots of guest memory: a full snapshot, then diffs that hold only the pages
/// dirtied since the previous link (a <see cref="Consumers.DirtyConsumer"/>'s changes), each a page stream in its own
/// file, with zero pages as holes (a record, no data) and the VMM's states (vCPU registers, devices) by name.
/// </summary>
/// <remarks>
/// <para>Each link is a complete page stream (header, checksummed records, end record), so a truncated or corrupted
/// file is refused when read. Links carry their kind and sequence number; <see cref="SnapshotChain.RestoreAsync"/>
/// refuses a chain out of order or with a gap.</para>
/// <para>What the links contain is what memory holds while they are written: for a consistent snapshot, either the
/// pause covers the write (<see cref="WriteFullAsync"/>, <see cref="WriteDiffAsync"/>), or the pages are write-protected
/// in the pause and written after resume, each copied before a write reaches it (<see cref="CopyBeforeWriteGuard"/>,
/// <see cref="WriteProtectedAsync"/>).</para>
/// <para>Thread safety: one link at a time (calls are not serialised); memory may be read by others meanwhile.</para>
/// </remarks>
public sealed class SnapshotChainWriter
{
    private readonly GuestMemoryView _memory;
    private readonly int _pageSize;
    private bool _hasFull;
    private Guid _chain;    // the chain the last full snapshot started
    private Guid _lastLink; // the parent of the next diff
    private SnapshotLink? _continues; // a compacted chain's identity, taken by this writer's first full snapshot

    /// <summary>Creates a writer of snapshots of <paramref name="memory"/>.</summary>
    /// <param name="memory">Guest memory.</param>
    /// <param name="pageSize">Bytes per page, as the page stream's.</param>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    public SnapshotChainWriter(GuestMemoryView memory, int pageSize = 4096)
        : this(memory, pageSize, false)
    {
    }

    /// <summary>
    /// A writer whose first link is a compacted chain's full snapshot: it takes the sequence and identity of the chain's
    /// last link, so that the diffs written after that link follow it.
    /// </summary>
    internal SnapshotChainWriter(GuestMemoryView memory, SnapshotLink continues, int pageSize = 4096)
        : this(memory, pageSize)
    {
        NextSequence = continues.Sequence;
        _continues = continues;
    }

    private SnapshotChainWriter(GuestMemoryView memory, int pageSize, bool _)
    {
        ArgumentNullException.ThrowIfNull(memory);
        _memory = memory;
        _pageSize = pageSize;
    }

    /// <summary>The sequence number the next link gets (0 for the first full snapshot).</summary>
    public long NextSequence { get; private set; }

    /// <summary>Writes a full snapshot: every page of memory (zero pages as holes), then the states.</summary>
    /// <param name="destination">Where the link goes (a file); left open.</param>
    /// <param name="states">Named states to store with it, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the writes.</param>
    /// <returns>What the link holds.</returns>
    /// <exception cref="ArgumentException">A state uses the reserved name <c>dirtylog.snapshot</c>.</exception>
    public async ValueTask<PageStreamSummary> WriteFullAsync(Stream destination, IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? states, CancellationToken cancellationToken)
    {
        ulong pages = _memory.Size / (ulong)_pageSize;
        PageStreamSummary summary = await WriteLinkAsync(destination, [new DirtyRun(0, pages)], full: true, states, cancellationToken).ConfigureAwait(false);
        _hasFull = true;
        return summary;
    }

    /// <summary>Writes a diff: the pages of <paramref name="runs"/> as memory holds them now, then the states.</summary>
    /// <param name="destination">Where the link goes (a file); left open.</param>
    /// <param name="runs">The pages dirtied since the previous link, in page numbers of <see cref="GuestMemoryView"/>'s page size.</param>
    /// <param name="states">Named states to store with it, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the writes.</param>
    /// <returns>What the link holds.</returns>
    /// <exception cref="InvalidOperationException">No full snapshot was written first.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A run leaves guest memory.</exception>
    /// <exception cref="ArgumentException">A state uses the reserved name <c>dirtylog.snapshot</c>.</exception>
    public ValueTask<PageStreamSummary> WriteDiffAsync(Stream destination, IReadOnlyList<DirtyRun> runs, IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? states, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(runs);
        if (!_hasFull)
        {
            throw new InvalidOperationException("A chain starts with a full snapshot: write one before any diff.");
        }

        return WriteLinkAsync(destination, runs, full: false, states, cancellationToken);
    }

    /// <summary>
    /// Writes the link <paramref name="protectedPages"/> protected in the pause, while the guest runs: a full snapshot
    /// after <see cref="CopyBeforeWriteGuard.ProtectAll"/>, a diff after <see cref="CopyBeforeWriteGuard.Protect"/>. The
    /// pages are written as they were at the protection, whatever the guest writes meanwhile; each is unprotected once
    /// copied. Whether it succeeds or fails, the link is finished: nothing stays protected.
    /// </summary>
    /// <param name="destination">Where the link goes (a file); left open.</param>
    /// <param name="protectedPages">The guard over this writer's memory, with a link protected.</param>
    /// <param name="states">Named states captured in the same pause (vCPU registers, devices), or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the writes.</param>
    /// <returns>What the link holds.</returns>
    /// <exception cref="ArgumentException">The guard guards other memory or another page size; or a state uses the reserved name.</exception>
    /// <exception cref="InvalidOperationException">The guard has no link protected, or another writer writes it; a diff comes before any full snapshot; or the guard's fault thread failed.</exception>
    /// <exception cref="ObjectDisposedException">The guard was disposed (before or during the write).</exception>
    /// <remarks>On failure the pages the link carried must be sent again: put the diff's runs back into its consumer (<see cref="Consumers.DirtyConsumer.PutBack"/>).</remarks>
    [SupportedOSPlatform("linux")]
    public async ValueTask<PageStreamSummary> WriteProtectedAsync(Stream destination, CopyBeforeWriteGuard protectedPages,
        IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? states, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(protectedPages);
        DirtyRun[] runs = protectedPages.BeginWrite(out bool full); // from here this call owns the link, and ends it
        bool written = false;
        try
        {
            if (protectedPages.Memory.Address != _memory.Address || protectedPages.Memory.Size != _memory.Size || protectedPages.PageSize != _pageSize)
            {
                throw new ArgumentException("The guard guards other memory (or pages of another size) than this writer writes.", nameof(protectedPages));
            }

            if (!full && !_hasFull)
            {
                throw new InvalidOperationException("A chain starts with a full snapshot: write one before any diff.");
            }

            PageStreamSummary summary = await WriteLinkAsync(destination, runs, full, states, cancellationToken, protectedPages.ChunkSource).ConfigureAwait(false);
            written = true;
            _hasFull |= full;
            return summary;
        }
        finally
        {
            protectedPages.FinishLink(written); // a refused or failed write releases every page: no write waits for good
        }
    }

    private async ValueTask<PageStreamSummary> WriteLinkAsync(Stream destination, IReadOnlyList<DirtyRun> runs, bool full,
        IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? states, CancellationToken cancellationToken, IPageChunkSource? source = null)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (states is not null && states.ContainsKey(SnapshotHeader.StateName))
        {
            throw new ArgumentException($"The state name \"{SnapshotHeader.StateName}\" is reserved for the chain itself.", nameof(states));
        }

        // Segments that hold a whole data record and more: with the default 4 KiB ones, a stream of one-page records
        // rents more segments per flush than the shared pool keeps, and allocates about 1.5 bytes per byte written.
        PipeWriter output = PipeWriter.Create(destination, new StreamPipeWriterOptions(minimumBufferSize: PageStreamWriter.RecommendedBufferSize, leaveOpen: true));
        try
        {
            var writer = new PageStreamWriter(output, _memory, _pageSize);
            SnapshotLink link = full
                ? _continues is { } last
                    ? last with { Full = true, Parent = Guid.Empty } // a compacted chain: the last link's state, as a base
                    : new SnapshotLink(true, NextSequence, Guid.NewGuid(), Guid.NewGuid(), Guid.Empty)
                : new SnapshotLink(false, NextSequence, _chain, Guid.NewGuid(), _lastLink);
            await writer.WriteStateAsync(SnapshotHeader.StateName, SnapshotHeader.Encode(link), cancellationToken).ConfigureAwait(false);
            if (source is null)
            {
                await writer.WriteRoundAsync(runs, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await writer.WriteRoundAsync(runs as DirtyRun[] ?? [.. runs], source, cancellationToken).ConfigureAwait(false);
            }

            if (states is not null)
            {
                foreach (KeyValuePair<string, ReadOnlyMemory<byte>> state in states)
                {
                    await writer.WriteStateAsync(state.Key, state.Value, cancellationToken).ConfigureAwait(false);
                }
            }

            await writer.WriteEndAsync(cancellationToken).ConfigureAwait(false);
            NextSequence = link.Sequence + 1;
            (_chain, _lastLink, _continues) = (link.Chain, link.Link, null);
            return new PageStreamSummary(writer.DataPages, writer.ZeroPages, writer.Rounds, writer.BytesWritten);
        }
        finally
        {
            await output.CompleteAsync().ConfigureAwait(false);
        }
    }
}
