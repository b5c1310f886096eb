// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Native;

namespace DirtyLog.Snapshots;

/// <summary>The fault thread: copies a protected page a write reached first, then lets the write go on.</summary>
public sealed partial class CopyBeforeWriteGuard
{
    // Pages preserved per fault, the faulting one and those after it still protected and unclaimed: a guest that
    // writes memory in order meets one fault per this many pages instead of one per page.
    private const ulong CopyAheadPages = 32;

    private void ServeFaults()
    {
        Span<UserfaultfdFault> faults = stackalloc UserfaultfdFault[16];
        while (!_stopping)
        {
            try
            {
                int count = _uffd.ReadFaults(faults, timeoutMilliseconds: -1);
                for (int i = 0; i < count; i++)
                {
                    ServeFault(faults[i].Address);
                }
            }
            catch (Exception error) when (!_stopping)
            {
                // A fault left unserved would hold its writer (a vCPU) for good: give every page back, and let the
                // writer fail the link, whose content can no longer be trusted.
                _faultError = error;
                lock (_gate)
                {
                    ReleaseLinkAfterFaultError();
                }

                return;
            }
        }
    }

    /// <summary>A write waits on the page at <paramref name="address"/>: copy it (and the unclaimed pages after it) first if nobody did, then unprotect it.</summary>
    private void ServeFault(ulong address)
    {
        Interlocked.Increment(ref _faultsServed);
        ulong offset = address - (ulong)_memory.Address;
        if (offset >= _memory.Size)
        {
            return; // not guest memory: the kernel reports only registered ranges
        }

        ulong page = offset / (ulong)_pageSize;
        ref byte state = ref State(page);
        while (true)
        {
            switch (Volatile.Read(ref state))
            {
                case Protected:
                    if (Interlocked.CompareExchange(ref state, Preserving, Protected) != Protected)
                    {
                        continue; // the writer claimed it meanwhile
                    }

                    // Still protected: nobody wrote it since the pause. A write here is often the first of a sequence
                    // (a guest filling memory): the pages after it that nobody took yet are preserved with it, so that
                    // the next writes do not each wait for a round trip. Copy, publish, then let the writes in.
                    ulong end = page + 1;
                    while (end < _pages && end - page < CopyAheadPages && Interlocked.CompareExchange(ref State(end), Preserving, Protected) == Protected)
                    {
                        end++;
                    }

                    int bytes = (int)((end - page) * (ulong)_pageSize);
                    _memory.Slice(page * (ulong)_pageSize, bytes).CopyTo(_shadowView.Slice(page * (ulong)_pageSize, bytes));
                    for (ulong preserved = page; preserved < end; preserved++)
                    {
                        Volatile.Write(ref State(preserved), Preserved);
                    }

                    Interlocked.Add(ref _pagesCopiedOnWrite, (long)(end - page)); // before the write goes on: it sees itself counted
                    _uffd.WriteProtect(AddressOf(page), (ulong)bytes, protect: false);
                    return;
                case Copied:
                    // The writer has its copy; its batched unprotect may be a while: let this write in now.
                    _uffd.WriteProtect(AddressOf(page), (ulong)_pageSize, protect: false);
                    return;
                case Claimed:
                    // The writer holds it: ask for an unprotect as soon as it lets the page go. If it let go between
                    // our read and the request (the state moved on), it may have missed the request: act ourselves.
                    Interlocked.Exchange(ref _writeWaitsOnClaimed, 1);
                    if (Volatile.Read(ref state) == Claimed)
                    {
                        return;
                    }

                    continue;
                case Preserved:
                    return; // our own unprotect, before, woke the write
                default:
                    // Idle: the page was unprotected already (a late report). Wake without touching the protection, which
                    // a next link may have set again meanwhile.
                    _uffd.Wake(AddressOf(page), (ulong)_pageSize);
                    return;
            }
        }
    }

    /// <summary>After the fault thread failed: unprotect the link so no write waits for good; the caller holds the gate.</summary>
    private void ReleaseLinkAfterFaultError()
    {
        if (_link is not { } runs)
        {
            return;
        }

        foreach (Bitmaps.DirtyRun run in runs)
        {
            try
            {
                _uffd.WriteProtect(AddressOf(run.FirstPage), run.PageCount * (ulong)_pageSize, protect: false);
            }
            catch (KernelException)
            {
                // Nothing more can be done here; the writer reports the fault thread's error.
            }
        }
    }
}
