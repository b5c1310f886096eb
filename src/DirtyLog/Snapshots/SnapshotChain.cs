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
    /// A link is not a snapshot, the chain does not start with a full snapshot, a diff belongs to another chain, does
    /// not apply on the link before it or does not follow its sequence number, or the links were written from memories
    /// of different sizes. Memory then holds the links applied so far, the refused one included.
    /// </exception>
    /// <exception cref="PageStreamException">A link is truncated, corrupted, or larger than <paramref name="memory"/>.</exception>
    public static async ValueTask<PageStreamSummary> RestoreAsync(IReadOnlyList<Stream> chain, GuestMemoryView memory, bool memoryStartsZeroed, CancellationToken cancellationToken)
    {
        CheckChain(chain);
        ArgumentNullException.ThrowIfNull(memory);
        return (await RestoreCoreAsync(chain, null, memory, memoryStartsZeroed, cancellationToken).ConfigureAwait(false)).Summary;
    }

    private static void CheckChain(IReadOnlyList<Stream> chain)
    {
        ArgumentNullException.ThrowIfNull(chain);
        if (chain.Count == 0)
        {
            throw new ArgumentException("A chain has at least its full snapshot.", nameof(chain));
        }

        for (int i = 0; i < chain.Count; i++)
        {
            if (chain[i] is null)
            {
                throw new ArgumentException($"Link {i} of the chain is null.", nameof(chain));
            }
        }
    }

    // first: a reader over the first link whose header was peeked at (PeekMemoryBytesAsync), or null to open one.
    private static async ValueTask<(PageStreamSummary Summary, SnapshotLink Last)> RestoreCoreAsync(IReadOnlyList<Stream> chain, PipeReader? first, GuestMemoryView memory, bool memoryStartsZeroed, CancellationToken cancellationToken)
    {
        ulong data = 0, zero = 0, chainMemory = 0;
        long rounds = 0, bytes = 0;
        SnapshotLink last = default;
        IReadOnlyDictionary<string, ReadOnlyMemory<byte>> states = new Dictionary<string, ReadOnlyMemory<byte>>();
        for (int i = 0; i < chain.Count; i++)
        {
            PipeReader input = i == 0 && first is not null ? first : PipeReader.Create(chain[i], new StreamPipeReaderOptions(leaveOpen: true));
            PageStreamSummary link;
            ulong linkMemory;
            try
            {
                var reader = new PageStreamReader(input, memory) { MemoryStartsZeroed = memoryStartsZeroed && i == 0 };
                link = await reader.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
                linkMemory = reader.SourceMemoryBytes;
            }
            finally
            {
                if (!ReferenceEquals(input, first))
                {
                    await input.CompleteAsync().ConfigureAwait(false);
                }
            }

            SnapshotLink header = SnapshotHeader.Decode(link.States, i);
            if (i == 0 && !header.Full)
            {
                throw new InvalidDataException($"The chain starts with a diff (sequence {header.Sequence}): a chain starts with a full snapshot.");
            }

            if (i > 0)
            {
                string? wrong = header.Full ? $"is a full snapshot (sequence {header.Sequence}): only the first link may be"
                    : header.Chain != last.Chain ? $"is a diff of another chain ({header.Chain:N}, not {last.Chain:N})"
                    : header.Sequence != last.Sequence + 1 ? $"has sequence {header.Sequence} where {last.Sequence + 1} was expected: a diff is missing or out of order"
                    : header.Parent != last.Link ? $"applies on link {header.Parent:N}, not on the link before it ({last.Link:N}): a diff of a fork of the chain"
                    : linkMemory != chainMemory ? $"was written from {linkMemory:N0} bytes of memory; the chain's base from {chainMemory:N0}"
                    : null;
                if (wrong is not null)
                {
                    throw new InvalidDataException($"Link {i} of the chain {wrong}.");
                }
            }

            chainMemory = linkMemory;
            last = header;
            data += link.DataPages;
            zero += link.ZeroPages;
            rounds += link.Rounds;
            bytes += link.Bytes;
            var own = new Dictionary<string, ReadOnlyMemory<byte>>(link.States, StringComparer.Ordinal);
            own.Remove(SnapshotHeader.StateName);
            states = own;
        }

        return (new PageStreamSummary(data, zero, rounds, bytes) { States = states }, last);
    }

    /// <summary>
    /// The memory size a link's page stream header claims, read without consuming it (the page stream reader reads the
    /// header again and checks all of it); 0 when the bytes are not a page stream header, which that reader reports.
    /// </summary>
    private static async ValueTask<ulong> PeekMemoryBytesAsync(PipeReader input, CancellationToken cancellationToken)
    {
        ReadResult read = await input.ReadAtLeastAsync(PageStreamFormat.HeaderBytes, cancellationToken).ConfigureAwait(false);
        ulong memory = MemoryBytesOf(read.Buffer);
        input.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        return memory;
    }

    private static ulong MemoryBytesOf(System.Buffers.ReadOnlySequence<byte> buffer)
    {
        if (buffer.Length < PageStreamFormat.HeaderBytes)
        {
            return 0;
        }

        Span<byte> header = stackalloc byte[PageStreamFormat.HeaderBytes];
        System.Buffers.BuffersExtensions.CopyTo(buffer.Slice(0, PageStreamFormat.HeaderBytes), header);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(header) == PageStreamFormat.Magic
            ? System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(header[16..])
            : 0;
    }

    /// <summary>Refuses a memory size that is not a link's own, before any memory is allocated for it.</summary>
    private static async ValueTask<PipeReader> OpenCheckedAsync(Stream link, string what, ulong memorySize, CancellationToken cancellationToken)
    {
        PipeReader input = PipeReader.Create(link, new StreamPipeReaderOptions(leaveOpen: true));
        try
        {
            ulong claimed = await PeekMemoryBytesAsync(input, cancellationToken).ConfigureAwait(false);
            if (claimed != 0 && claimed != memorySize)
            {
                throw new ArgumentException($"{what} was written from {claimed:N0} bytes of memory, not {memorySize:N0}.", nameof(memorySize));
            }

            return input;
        }
        catch
        {
            await input.CompleteAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static void CheckMemorySize(ulong memorySize)
    {
        if (memorySize == 0 || memorySize % 4096 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(memorySize), memorySize, "Guest memory is a non-zero multiple of 4096 bytes.");
        }
    }

    /// <summary>Restores <paramref name="chain"/> into scratch memory and writes it as one full snapshot with the last link's sequence, identity and states.</summary>
    /// <param name="chain">The links, oldest first; left open.</param>
    /// <param name="memorySize">Bytes of guest memory the chain covers: the size its links were written from.</param>
    /// <param name="destination">Where the compacted snapshot goes; left open. Diffs written after the chain's last link follow it.</param>
    /// <param name="cancellationToken">Cancels the reads and writes.</param>
    /// <returns>What the compacted snapshot holds.</returns>
    /// <exception cref="ArgumentException">
    /// <paramref name="chain"/> is empty, or <paramref name="memorySize"/> is not the size the chain was written from
    /// (checked from the first link's header before any memory is allocated).
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="memorySize"/> is not a non-zero multiple of 4096, or more than can be allocated.</exception>
    /// <exception cref="InvalidDataException">As <see cref="RestoreAsync"/>.</exception>
    /// <exception cref="PageStreamException">As <see cref="RestoreAsync"/>.</exception>
    /// <remarks>Needs <paramref name="memorySize"/> bytes of scratch memory (zeroed, touched only where pages are not zero).</remarks>
    public static async ValueTask<PageStreamSummary> CompactAsync(IReadOnlyList<Stream> chain, ulong memorySize, Stream destination, CancellationToken cancellationToken)
    {
        CheckChain(chain);
        ArgumentNullException.ThrowIfNull(destination);
        CheckMemorySize(memorySize);
        PipeReader first = await OpenCheckedAsync(chain[0], "The chain", memorySize, cancellationToken).ConfigureAwait(false);
        try
        {
            using var scratch = new ScratchMemory(memorySize);
            (PageStreamSummary restored, SnapshotLink last) = await RestoreCoreAsync(chain, first, scratch.View, memoryStartsZeroed: true, cancellationToken).ConfigureAwait(false);
            var writer = new SnapshotChainWriter(scratch.View, continues: last);
            return await writer.WriteFullAsync(destination, restored.States, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await first.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Restores <paramref name="chain"/> and <paramref name="full"/> each into its own scratch memory and compares them
    /// byte for byte: the check that a base plus its diffs equals a full snapshot of the same paused state.
    /// </summary>
    /// <param name="chain">The links, oldest first; left open.</param>
    /// <param name="full">A full snapshot of the state the chain's last link captured; left open.</param>
    /// <param name="memorySize">Bytes of guest memory: the size both were written from.</param>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <returns>The first guest-physical address whose page differs, or <see langword="null"/> when every byte is equal.</returns>
    /// <exception cref="ArgumentException">
    /// <paramref name="chain"/> is empty, or <paramref name="memorySize"/> is not the size the chain or the full snapshot
    /// was written from (checked before any memory is allocated).
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="memorySize"/> is not a non-zero multiple of 4096, or more than can be allocated.</exception>
    /// <exception cref="InvalidDataException">As <see cref="RestoreAsync"/>.</exception>
    /// <exception cref="PageStreamException">As <see cref="RestoreAsync"/>.</exception>
    public static async ValueTask<ulong?> FindFirstDifferenceAsync(IReadOnlyList<Stream> chain, Stream full, ulong memorySize, CancellationToken cancellationToken)
    {
        CheckChain(chain);
        ArgumentNullException.ThrowIfNull(full);
        CheckMemorySize(memorySize);
        PipeReader first = await OpenCheckedAsync(chain[0], "The chain", memorySize, cancellationToken).ConfigureAwait(false);
        PipeReader? other = null;
        try
        {
            other = await OpenCheckedAsync(full, "The full snapshot", memorySize, cancellationToken).ConfigureAwait(false);
            using var fromChain = new ScratchMemory(memorySize);
            using var fromFull = new ScratchMemory(memorySize);
            await RestoreCoreAsync(chain, first, fromChain.View, memoryStartsZeroed: true, cancellationToken).ConfigureAwait(false);
            await RestoreCoreAsync([full], other, fromFull.View, memoryStartsZeroed: true, cancellationToken).ConfigureAwait(false);
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
        finally
        {
            await first.CompleteAsync().ConfigureAwait(false);
            if (other is not null)
            {
                await other.CompleteAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Zeroed native memory for a restore, freed on dispose.</summary>
    private sealed unsafe class ScratchMemory : IDisposable
    {
        private void* _memory;

        public ScratchMemory(ulong size)
        {
            try
            {
                // calloc: large sizes come from mmap, zero pages that cost nothing until touched.
                _memory = NativeMemory.AllocZeroed((nuint)size);
            }
            catch (OutOfMemoryException e)
            {
                // A failed allocation of a size the caller gave, not the process out of memory: say which size.
                throw new ArgumentOutOfRangeException($"{size:N0} bytes of scratch memory could not be allocated.", e);
            }

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
