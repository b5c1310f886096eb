// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Memory;
using DirtyLog.Migration;

namespace DirtyLog.Snapshots;

/// <summary>The writer's side: each chunk's pages claimed, copied into the shadow and unprotected before it is read.</summary>
public sealed partial class CopyBeforeWriteGuard
{
    /// <summary>Reads a protected link from the shadow, chunk by chunk.</summary>
    private sealed class LinkReader(CopyBeforeWriteGuard guard) : IPageChunkSource
    {
        public GuestMemoryView Memory => guard._shadowView;

        public void BeforeRead(ulong firstPage, ulong pageCount) => guard.CopyChunk(firstPage, pageCount);

        public void AfterRead(ulong firstPage, ulong pageCount) =>
            guard._shadow.Discard(firstPage * (ulong)guard._pageSize, pageCount * (ulong)guard._pageSize);
    }

    /// <summary>
    /// Makes the shadow hold every page of the chunk as it was at the protection: pages the fault thread preserved are
    /// there already; the others are claimed, copied while still protected, then unprotected run by run.
    /// </summary>
    /// <exception cref="InvalidOperationException">The fault thread failed (the link was released), or a page of the chunk is not protected.</exception>
    private void CopyChunk(ulong firstPage, ulong pageCount)
    {
        ThrowIfFaultThreadFailed();
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
                    break; // ours: copied with its run below
                }

                if (current == Preserved)
                {
                    CopyClaimed(claimedFrom, page); // a preserved page ends the run of claimed pages before it
                    claimedFrom = page + 1;
                    Volatile.Write(ref state, Idle);
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

        CopyClaimed(claimedFrom, end);
    }

    /// <summary>Copies claimed pages [<paramref name="from"/>, <paramref name="to"/>) into the shadow, then unprotects them (waking their writes).</summary>
    private void CopyClaimed(ulong from, ulong to)
    {
        if (from == to)
        {
            return;
        }

        ulong offset = from * (ulong)_pageSize;
        ulong bytes = (to - from) * (ulong)_pageSize;
        for (ulong done = 0; done < bytes;)
        {
            int step = (int)Math.Min(bytes - done, 1UL << 30);
            _memory.Slice(offset + done, step).CopyTo(_shadowView.Slice(offset + done, step));
            done += (ulong)step;
        }

        _uffd.WriteProtect(AddressOf(from), bytes, protect: false);
        FillStates(from, to - from, Idle);
    }

    private void ThrowIfFaultThreadFailed()
    {
        if (_faultError is { } error)
        {
            throw new InvalidOperationException("The copy-before-write fault thread failed; the link's pages were released and its content cannot be trusted.", error);
        }
    }
}
