// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
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
        public ReadOnlyMemory<byte> ReadChunk(ulong firstPage, ulong pageCount) => guard.CopyChunk(firstPage, pageCount);
    }

    /// <summary>
    /// Copies the chunk's pages, as they were at the protection, into the staging buffer: pages the fault thread
    /// preserved come from the shadow; the others are claimed and copied from guest memory while still protected.
    /// </summary>
    /// <exception cref="InvalidOperationException">The fault thread failed or the link was released (disposed), or a page of the chunk is not protected.</exception>
    private ReadOnlyMemory<byte> CopyChunk(ulong firstPage, ulong pageCount)
    {
        // Under the gate: Dispose cannot unmap the states and the shadow while a chunk reads them (the staging buffer
        // the writer reads afterwards is managed memory, which outlives the guard).
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_link is null)
            {
                ThrowIfFaultThreadFailed();
                throw new InvalidOperationException("The link was released before it was written.");
            }

            return CopyChunkLocked(firstPage, pageCount);
        }
    }

    private ReadOnlyMemory<byte> CopyChunkLocked(ulong firstPage, ulong pageCount)
    {
        ThrowIfFaultThreadFailed();
        int bytes = checked((int)(pageCount * (ulong)_pageSize));
        if (bytes > _staging.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(pageCount), pageCount, $"A chunk holds at most {_staging.Length / _pageSize} pages.");
        }

        if (_pendingFrom != ulong.MaxValue && (firstPage + pageCount - _pendingFrom > UnprotectBatchPages || firstPage > _pendingTo + MaxGapPages))
        {
            FlushUnprotects();
        }

        Span<byte> staging = _staging.AsSpan(0, bytes);
        ulong claimedFrom = firstPage, end = firstPage + pageCount;
        for (ulong page = firstPage; page < end; page++)
        {
            ref byte state = ref State(page);
            var spin = default(SpinWait);
            while (true)
            {
                byte current = Volatile.Read(ref state);
                if (current == Protected && Interlocked.CompareExchange(ref state, Claimed, Protected) == Protected)
                {
                    break; // ours: copied with its neighbours below
                }

                if (current == Preserved)
                {
                    CopyClaimed(claimedFrom, page, firstPage, staging); // a preserved page ends the stretch of claimed pages before it
                    claimedFrom = page + 1;
                    _shadowView.Slice(page * (ulong)_pageSize, _pageSize).CopyTo(staging[(int)((page - firstPage) * (ulong)_pageSize)..]);
                    Volatile.Write(ref state, Idle); // unprotected already, by the fault thread
                    break;
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

        CopyClaimed(claimedFrom, end, firstPage, staging);
        _pendingFrom = Math.Min(_pendingFrom, firstPage);
        _pendingTo = end;
        return _staging.AsMemory(0, bytes);
    }

    /// <summary>Copies claimed pages [<paramref name="from"/>, <paramref name="to"/>) into the staging buffer and marks them copied (their unprotect is pending).</summary>
    private void CopyClaimed(ulong from, ulong to, ulong chunkFirst, Span<byte> staging)
    {
        if (from == to)
        {
            return;
        }

        int bytes = (int)((to - from) * (ulong)_pageSize);
        _memory.Slice(from * (ulong)_pageSize, bytes).CopyTo(staging[(int)((from - chunkFirst) * (ulong)_pageSize)..]);
        for (ulong page = from; page < to; page++)
        {
            Volatile.Write(ref State(page), Copied); // after the copy: from here the fault thread may let a write in
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
