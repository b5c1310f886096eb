// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Memory;
using DirtyLog.Migration;

namespace DirtyLog.Snapshots;

/// <summary>The writer's side: each chunk's pages claimed and copied into a staging buffer before it is read.</summary>
public sealed partial class CopyBeforeWriteGuard
{
    // Unprotects are batched: pages the writer copied stay protected (state Copied) until the pending span would
    // exceed this many pages, or a chunk starts more than MaxGapPages past it, or the link ends. A write that reaches
    // a Copied page meanwhile is let in at once by the fault thread, so the batch costs no wait; it saves an ioctl and
    // a TLB flush per run. The gap bound matters: the kernel walks every present page of the span, protected or not
    // (one span over a sparse diff of a 256 MiB guest cost 10 times the per-run unprotects).
    private const ulong UnprotectBatchPages = 1024;
    private const ulong MaxGapPages = 8;

    /// <summary>Reads a protected link chunk by chunk, for one writer.</summary>
    private sealed class LinkReader(CopyBeforeWriteGuard guard) : IPageChunkSource
    {
        public PageChunk ReadChunk(ulong firstPage, ulong pageCount) => guard.ReadChunk(firstPage, pageCount);

        public void ChunkWritten(ulong firstPage, ulong pageCount) => guard.ChunkWritten(firstPage, pageCount);
    }

    /// <summary>
    /// Claims the chunk's pages. If the fault thread preserved none of them, the writer reads them in guest memory
    /// itself, where they stay protected (Claimed) until <see cref="ChunkWritten"/>: no copy. Otherwise they are
    /// copied, as they were at the protection, into the staging buffer (preserved pages from the shadow) and let go at once.
    /// </summary>
    /// <exception cref="InvalidOperationException">The fault thread failed or the link was released, or a page of the chunk is not protected.</exception>
    /// <exception cref="ObjectDisposedException">The guard was disposed.</exception>
    private PageChunk ReadChunk(ulong firstPage, ulong pageCount)
    {
        // Under the gate: Dispose cannot unmap the states and the shadow while a chunk reads them (the staging buffer
        // the writer reads afterwards is managed memory, which outlives the guard).
        lock (_gate)
        {
            ThrowIfLinkLost();
            int bytes = checked((int)(pageCount * (ulong)_pageSize));
            if (bytes > _staging.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(pageCount), pageCount, $"A chunk holds at most {_staging.Length / _pageSize} pages.");
            }

            if (_pendingFrom != ulong.MaxValue && (firstPage + pageCount - _pendingFrom > UnprotectBatchPages || firstPage > _pendingTo + MaxGapPages))
            {
                FlushUnprotects();
            }

            ulong end = firstPage + pageCount;
            bool anyPreserved = false;
            for (ulong page = firstPage; page < end; page++)
            {
                anyPreserved |= Claim(page) == Preserved;
            }

            if (!anyPreserved)
            {
                return new PageChunk(_memory, default); // read in place; ChunkWritten lets the pages go
            }

            Span<byte> staging = _staging.AsSpan(0, bytes);
            for (ulong page = firstPage; page < end; page++)
            {
                ref byte state = ref State(page);
                GuestMemoryView from = state == Preserved ? _shadowView : _memory;
                from.Slice(page * (ulong)_pageSize, _pageSize).CopyTo(staging[(int)((page - firstPage) * (ulong)_pageSize)..]);
                Volatile.Write(ref state, state == Preserved ? Idle : Copied); // Idle: the fault thread unprotected it already
            }

            LetGo(firstPage, end);
            return new PageChunk(null, _staging.AsMemory(0, bytes));
        }
    }

    /// <summary>
    /// The writer copied the chunk into the stream: its pages read in place are copied now (their unprotect pending,
    /// batched); a staged chunk was let go when it was staged.
    /// </summary>
    /// <exception cref="InvalidOperationException">The fault thread failed or the link was released while the chunk was read: its content cannot be trusted.</exception>
    /// <exception cref="ObjectDisposedException">The guard was disposed meanwhile.</exception>
    private void ChunkWritten(ulong firstPage, ulong pageCount)
    {
        lock (_gate)
        {
            ThrowIfLinkLost(); // a release while the pages were read in place let writes reach them
            ulong end = firstPage + pageCount;
            for (ulong page = firstPage; page < end; page++)
            {
                ref byte state = ref State(page);
                if (state == Claimed)
                {
                    Volatile.Write(ref state, Copied);
                }
            }

            LetGo(firstPage, end);
        }
    }

    /// <summary>Claims one page for the writer (Protected to Claimed), or finds it preserved by the fault thread; waits out a copy in progress.</summary>
    /// <returns>Claimed or Preserved.</returns>
    /// <exception cref="InvalidOperationException">The page is not protected (the link was released, or the fault thread failed).</exception>
    private byte Claim(ulong page)
    {
        ref byte state = ref State(page);
        var spin = default(SpinWait);
        while (true)
        {
            byte current = Volatile.Read(ref state);
            if (current == Protected && Interlocked.CompareExchange(ref state, Claimed, Protected) == Protected)
            {
                return Claimed;
            }

            if (current == Preserved)
            {
                return Preserved;
            }

            if (current == Preserving)
            {
                spin.SpinOnce(); // the fault thread is copying it: it will be Preserved in a moment
                continue;
            }

            if (current != Protected)
            {
                ThrowIfFaultThreadFailed();
                throw new InvalidOperationException($"Page {page} of the link is not protected (state {current}): it was released before it was written.");
            }
        }
    }

    /// <summary>
    /// Adds copied pages to the pending unprotects; if a write waits on one of them (the fault thread found it claimed),
    /// unprotects at once, which wakes it.
    /// </summary>
    private void LetGo(ulong firstPage, ulong end)
    {
        _pendingFrom = Math.Min(_pendingFrom, firstPage);
        _pendingTo = end;
        if (Interlocked.Exchange(ref _writeWaitsOnClaimed, 0) != 0) // after the states were written: see ServeFault
        {
            FlushUnprotects();
        }
    }

    private void ThrowIfLinkLost()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ThrowIfFaultThreadFailed();
        if (_link is null)
        {
            throw new InvalidOperationException("The link was released before it was written.");
        }
    }

    /// <summary>
    /// One unprotect over the pending span: the pages copied since the last flush and the gaps between their runs
    /// (pages outside the link are not protected, so unprotecting them changes nothing). Wakes the writes waiting there.
    /// </summary>
    private void FlushUnprotects()
    {
        if (_pendingFrom == ulong.MaxValue)
        {
            return;
        }

        _uffd.WriteProtect(AddressOf(_pendingFrom), (_pendingTo - _pendingFrom) * (ulong)_pageSize, protect: false);
        FillStates(_pendingFrom, _pendingTo - _pendingFrom, Idle);
        _pendingFrom = ulong.MaxValue;
        _pendingTo = 0;
    }

    private void ThrowIfFaultThreadFailed()
    {
        if (_faultError is { } error)
        {
            throw new InvalidOperationException("The copy-before-write fault thread failed; the link's pages were released and its content cannot be trusted.", error);
        }
    }
}
