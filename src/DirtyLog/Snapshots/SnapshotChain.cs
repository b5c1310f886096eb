// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Memory;
using DirtyLog.Migration;

namespace DirtyLog.Snapshots;

/// <summary>
/// Reading a chain written by <see cref="SnapshotChainWriter"/>: restore it into guest memory, compact it into one full
/// snapshot, and check that a full snapshot plus its diffs equals a full snapshot of the same state, byte for byte.
/// </summary>
/// <remarks>Thread safety: the methods keep no state; each reads its own streams and writes its own memory.</remarks>
public static class SnapshotChain
{
    /// <summary>Applies a full snapshot and then each diff, in order, to <paramref name="memory"/>.</summary>
    /// <param name="chain">The links, oldest first: a full snapshot, then diffs of consecutive sequence numbers. Left open.</param>
    /// <param name="memory">Guest memory to restore into.</param>
    /// <param name="memoryStartsZeroed">
    /// Whether <paramref name="memory"/> is fresh (all zero, never written): the full snapshot's zero pages are then
    /// skipped instead of written. Diffs always write their zero pages (a page may have been zeroed since).
    /// </param>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <returns>The totals of every link, with the last link's states (the reserved chain state left out).</returns>
    /// <exception cref="ArgumentException"><paramref name="chain"/> is empty.</exception>
    /// <exception cref="InvalidDataException">
    /// A link is not a snapshot, the chain does not start with a full snapshot, or a diff does not follow its
    /// predecessor's sequence number. Memory then holds the links applied so far, the refused one included.
    /// </exception>
    /// <exception cref="PageStreamException">A link is truncated or corrupted.</exception>
    public static async ValueTask<PageStreamSummary> RestoreAsync(IReadOnlyList<Stream> chain, GuestMemoryView memory, bool memoryStartsZeroed, CancellationToken cancellationToken)
        => (await RestoreCoreAsync(chain, memory, memoryStartsZeroed, cancellationToken).ConfigureAwait(false)).Summary;

    private static async ValueTask<(PageStreamSummary Summary, long LastSequence)> RestoreCoreAsync(IReadOnlyList<Stream> chain, GuestMemoryView memory, bool memoryStartsZeroed, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(chain);
        ArgumentNullException.ThrowIfNull(memory);
        if (chain.Count == 0)
        {
            throw new ArgumentException("A chain has at least its full snapshot.", nameof(chain));
        }

        ulong data = 0, zero = 0;
        long rounds = 0, bytes = 0, sequence = 0;
        IReadOnlyDictionary<string, ReadOnlyMemory<byte>> states = new Dictionary<string, ReadOnlyMemory<byte>>();
        for (int i = 0; i < chain.Count; i++)
        {
            PipeReader input = PipeReader.Create(chain[i], new StreamPipeReaderOptions(leaveOpen: true));
            PageStreamSummary link;
            try
            {
                var reader = new PageStreamReader(input, memory) { MemoryStartsZeroed = memoryStartsZeroed && i == 0 };
                link = await reader.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                await input.CompleteAsync().ConfigureAwait(false);
            }

            (bool full, long linkSequence) = SnapshotHeader.Decode(link.States, i);
            if (i == 0 && !full)
            {
                throw new InvalidDataException($"The chain starts with a diff (sequence {linkSequence}): a chain starts with a full snapshot.");
            }

            if (i > 0 && (full || linkSequence != sequence + 1))
            {
                throw new InvalidDataException(full
                    ? $"Link {i} of the chain is a full snapshot (sequence {linkSequence}): only the first link may be."
                    : $"Link {i} of the chain has sequence {linkSequence} where {sequence + 1} was expected: a diff is missing or out of order.");
            }

            sequence = linkSequence;
            data += link.DataPages;
            zero += link.ZeroPages;
            rounds += link.Rounds;
            bytes += link.Bytes;
            var own = new Dictionary<string, ReadOnlyMemory<byte>>(link.States, StringComparer.Ordinal);
            own.Remove(SnapshotHeader.StateName);
            states = own;
        }

        return (new PageStreamSummary(data, zero, rounds, bytes) { States = states }, sequence);
    }

    /// <summary>Restores <paramref name="chain"/> into scratch memory and writes it as one full snapshot with the last link's sequence and states.</summary>
    /// <param name="chain">The links, oldest first; left open.</param>
    /// <param name="memorySize">Bytes of guest memory the chain covers.</param>
    /// <param name="destination">Where the compacted snapshot goes; left open. Diffs written after the chain's last link follow it.</param>
    /// <param name="cancellationToken">Cancels the reads and writes.</param>
    /// <returns>What the compacted snapshot holds.</returns>
    /// <exception cref="InvalidDataException">As <see cref="RestoreAsync"/>.</exception>
    /// <exception cref="PageStreamException">As <see cref="RestoreAsync"/>.</exception>
    /// <remarks>Needs <paramref name="memorySize"/> bytes of scratch memory (zeroed, touched only where pages are not zero).</remarks>
    public static async ValueTask<PageStreamSummary> CompactAsync(IReadOnlyList<Stream> chain, ulong memorySize, Stream destination, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(destination);
        using var scratch = new ScratchMemory(memorySize);
        (PageStreamSummary restored, long lastSequence) = await RestoreCoreAsync(chain, scratch.View, memoryStartsZeroed: true, cancellationToken).ConfigureAwait(false);
        var writer = new SnapshotChainWriter(scratch.View, firstSequence: lastSequence);
        return await writer.WriteFullAsync(destination, restored.States, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Restores <paramref name="chain"/> and <paramref name="full"/> each into its own scratch memory and compares them
    /// byte for byte: the check that a base plus its diffs equals a full snapshot of the same paused state.
    /// </summary>
    /// <param name="chain">The links, oldest first; left open.</param>
    /// <param name="full">A full snapshot of the state the chain's last link captured; left open.</param>
    /// <param name="memorySize">Bytes of guest memory.</param>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <returns>The first guest-physical address whose page differs, or <see langword="null"/> when every byte is equal.</returns>
    public static async ValueTask<ulong?> FindFirstDifferenceAsync(IReadOnlyList<Stream> chain, Stream full, ulong memorySize, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(full);
        using var fromChain = new ScratchMemory(memorySize);
        using var fromFull = new ScratchMemory(memorySize);
        await RestoreAsync(chain, fromChain.View, memoryStartsZeroed: true, cancellationToken).ConfigureAwait(false);
        await RestoreAsync([full], fromFull.View, memoryStartsZeroed: true, cancellationToken).ConfigureAwait(false);
        const int Chunk = 1 << 20;
        for (ulong offset = 0; offset < memorySize; offset += Chunk)
        {
            int length = (int)Math.Min(Chunk, memorySize - offset);
            Span<byte> a = fromChain.View.Slice(offset, length);
            Span<byte> b = fromFull.View.Slice(offset, length);
            int at = a.CommonPrefixLength(b);
            if (at < length)
            {
                return (offset + (ulong)at) & ~4095UL;
            }
        }

        return null;
    }

    /// <summary>Zeroed native memory for a restore, freed on dispose.</summary>
    private sealed unsafe class ScratchMemory : IDisposable
    {
        private void* _memory;

        public ScratchMemory(ulong size)
        {
            _memory = NativeMemory.AllocZeroed((nuint)size);
            View = new GuestMemoryView((nint)_memory, size);
        }

        public GuestMemoryView View { get; }

        public void Dispose()
        {
            NativeMemory.Free(_memory);
            _memory = null;
        }
    }
}
