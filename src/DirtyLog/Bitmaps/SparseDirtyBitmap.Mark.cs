// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.CompilerServices;
using DirtyLog.Bitmaps.Layouts;
using DirtyLog.Internal;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps;

/// <summary>Marking single pages and page ranges.</summary>
public sealed unsafe partial class SparseDirtyBitmap
{
    /// <summary>Marks one page dirty.</summary>
    /// <param name="page">The page number, below <see cref="PageCount"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="page"/> is not below <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <exception cref="OutOfMemoryException">The tree needed a new leaf and could not allocate it; nothing changed.</exception>
    /// <remarks>
    /// Lock-free: at most one atomic OR on the word (none when the bit is already set) and one per clear summary bit
    /// above it. In the flat layout the word's address is one shift away, as in a dense bitmap; the summaries are small
    /// arrays that stay in cache.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Mark(ulong page)
    {
        // Small enough to inline into a caller's loop, as a dense bitmap's mark is: the tree and the throws are calls.
        if (IsFlat && page < _pageCount)
        {
            _flat.Mark(page);
        }
        else
        {
            MarkSlow(page);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void MarkSlow(ulong page)
    {
        if (page >= _pageCount)
        {
            ThrowHelper.ThrowPageOutOfRange(nameof(page), page, _pageCount);
        }

        if (IsFlat)
        {
            _flat.Mark(page);
        }
        else
        {
            Tree.Mark(page);
        }
    }

    /// <summary>Marks <paramref name="pageCount"/> pages dirty, starting at <paramref name="firstPage"/>.</summary>
    /// <param name="firstPage">The first page of the range.</param>
    /// <param name="pageCount">The number of pages; 0 marks nothing.</param>
    /// <exception cref="ArgumentOutOfRangeException">The range overflows or ends past <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <exception cref="OutOfMemoryException">The tree needed a new leaf and could not allocate it; the pages before it were marked.</exception>
    /// <remarks>
    /// Works a word at a time, never a page at a time: an atomic OR for each partially covered word, a plain
    /// store of all ones for each fully covered word, then per 32,768 pages one atomic OR of the line summary (which
    /// is also the fence that publishes the plain stores) and a check of the summaries above. A plain store is safe
    /// because all ones is the result any racing OR would produce, and a racing harvest's exchange either
    /// returns the bits or leaves them for the next round.
    /// </remarks>
    public void MarkRange(ulong firstPage, ulong pageCount)
    {
        ThrowIfDisposed();
        CheckRange(firstPage, pageCount, nameof(pageCount));
        MarkRangeUnchecked(firstPage, firstPage + pageCount);
    }

    private void MarkRangeUnchecked(ulong page, ulong end)
    {
        while (page < end)
        {
            ulong leafFirst = page & ~LeafPageMask;
            ulong stop = Math.Min(end, leafFirst + (1UL << LeafPageShift));
            ulong leafIndex = page >> LeafPageShift;
            ulong* leaf = OpenLeaf(leafIndex, out nint context);
            ulong lineMask = SetLeafRange(leaf, (int)(page - leafFirst), (int)(stop - leafFirst), out bool storedPlainly);
            PublishLeaf(context, leafIndex, lineMask, storedPlainly);
            page = stop;
        }
    }

    /// <summary>The words of leaf <paramref name="leafIndex"/> (512 words, 32,768 pages), in whichever layout is in use.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong* OpenLeaf(ulong leafIndex, out nint context)
    {
        if (IsFlat)
        {
            context = 0;
            return _flat.OpenLeaf(leafIndex);
        }

        return Tree.OpenLeaf(leafIndex, out context);
    }

    /// <summary>Publishes the lines <paramref name="lineMask"/> of a leaf written through <see cref="OpenLeaf"/>, fencing plain stores first when asked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PublishLeaf(nint context, ulong leafIndex, ulong lineMask, bool fence)
    {
        if (IsFlat)
        {
            _flat.PublishLeaf(leafIndex, lineMask);
        }
        else
        {
            Tree.PublishLeaf(context, leafIndex, lineMask, fence);
        }
    }

    private void ThrowIfDisposed()
    {
        if (_flat is null && _tree is null)
        {
            ThrowHelper.ThrowObjectDisposed(this);
        }
    }
}
