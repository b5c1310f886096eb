// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Threading;
using DirtyLog.Internal;

namespace DirtyLog.Bitmaps;

/// <summary>Marking single pages and page ranges.</summary>
public sealed unsafe partial class SparseDirtyBitmap
{
    private const ulong LeafPageMask = (1UL << LeafPageShift) - 1;

    /// <summary>Marks one page dirty.</summary>
    /// <param name="page">The page number, below <see cref="PageCount"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="page"/> is not below <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <exception cref="OutOfMemoryException">A new leaf was needed and could not be allocated; nothing changed.</exception>
    /// <remarks>Lock-free: at most one atomic OR on the word (none when the bit is already set) and one per clear summary bit on the path.</remarks>
    public void Mark(ulong page)
    {
        TreeNode* root = Root;
        if (page >= _pageCount)
        {
            ThrowHelper.ThrowPageOutOfRange(nameof(page), page, _pageCount);
        }

        ulong* leaf = GetOrCreateLeaf(root, page, out TreeNode* bottom);
        SetBits(ref leaf[(page >> WordShift) & (LeafWords - 1)], 1UL << (int)(page & 63));
        PublishPath(bottom, page, 1UL << (int)((page >> LinePageShift) & (NodeFanout - 1)));
    }

    /// <summary>Marks <paramref name="pageCount"/> pages dirty, starting at <paramref name="firstPage"/>.</summary>
    /// <param name="firstPage">The first page of the range.</param>
    /// <param name="pageCount">The number of pages; 0 marks nothing.</param>
    /// <exception cref="ArgumentOutOfRangeException">The range overflows or ends past <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <exception cref="OutOfMemoryException">A new leaf was needed and could not be allocated; the pages before it were marked.</exception>
    /// <remarks>
    /// Works a word at a time, never a page at a time: an atomic OR for each partially covered word, a plain
    /// store of all ones for each fully covered word, then per leaf one atomic OR of the line summary (which is
    /// also the fence that publishes the plain stores) and a check of the summaries above. A plain store is safe
    /// because all ones is the result any racing OR would produce, and a racing harvest's exchange either
    /// returns the bits or leaves them for the next round.
    /// </remarks>
    public void MarkRange(ulong firstPage, ulong pageCount)
    {
        TreeNode* root = Root;
        CheckRange(firstPage, pageCount, nameof(pageCount));
        MarkRangeUnchecked(root, firstPage, firstPage + pageCount);
    }

    private void MarkRangeUnchecked(TreeNode* root, ulong page, ulong end)
    {
        while (page < end)
        {
            ulong leafFirst = page & ~LeafPageMask;
            ulong stop = Math.Min(end, leafFirst + (1UL << LeafPageShift));
            ulong* leaf = GetOrCreateLeaf(root, page, out TreeNode* bottom);
            ulong lineMask = SetLeafRange(leaf, (int)(page - leafFirst), (int)(stop - leafFirst), out bool storedPlainly);
            if (storedPlainly)
            {
                // Plain stores must be visible before any summary is read, or a harvest could take the summary,
                // miss a still-buffered word, and leave it under a clear summary. An unconditional atomic OR of
                // the line summary is that fence and the first summary update in one instruction.
                Interlocked.Or(ref TreeNode.LineSummaryOf(bottom, ChildIndex(page, 1)), lineMask);
            }

            PublishPath(bottom, page, lineMask);
            page = stop;
        }
    }

    /// <summary>
    /// Sets the pages [<paramref name="first"/>, <paramref name="end"/>) of one leaf and returns the mask of lines touched;
    /// <paramref name="storedPlainly"/> tells whether plain stores still await a fence.
    /// </summary>
    private static ulong SetLeafRange(ulong* leaf, int first, int end, out bool storedPlainly)
    {
        int firstWord = first >> WordShift;
        int lastWord = (end - 1) >> WordShift;
        ulong headMask = ~0UL << (first & 63);
        ulong tailMask = ~0UL >> (63 - ((end - 1) & 63));
        ulong lineMask = RangeMask(firstWord / LineWords, lastWord / LineWords);
        storedPlainly = false;
        if (firstWord == lastWord)
        {
            SetBits(ref leaf[firstWord], headMask & tailMask);
            return lineMask;
        }

        int w = firstWord;
        if (headMask != ~0UL)
        {
            SetBits(ref leaf[w++], headMask);
        }

        int fullEnd = tailMask == ~0UL ? lastWord + 1 : lastWord;
        if (fullEnd > w)
        {
            // No read first: a store goes into the store buffer while the line is fetched, where a read
            // would wait for it (measured: reading first cost three times as much).
            StoreAllOnes(leaf + w, fullEnd - w);
            storedPlainly = true;
        }

        if (tailMask != ~0UL && (Volatile.Read(ref leaf[lastWord]) & tailMask) != tailMask)
        {
            // A full fence: it also publishes the plain stores before it.
            Interlocked.Or(ref leaf[lastWord], tailMask);
            storedPlainly = false;
        }

        return lineMask;
    }

    /// <summary>Stores all ones into <paramref name="count"/> words, a whole 64-byte line per vector store where aligned.</summary>
    /// <remarks>
    /// A vector store need not be atomic as a whole: each byte ends up all ones whatever a racing OR or exchange
    /// does, and an exchange that sees part of it returns pages this range marked, leaving the rest set.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreAllOnes(ulong* words, int count)
    {
        ulong* end = words + count;
        while (words < end && ((nuint)words & 63) != 0)
        {
            *words++ = ~0UL;
        }

        if (Vector512.IsHardwareAccelerated)
        {
            for (; words + LineWords <= end; words += LineWords)
            {
                Vector512.StoreAligned(Vector512<ulong>.AllBitsSet, words);
            }
        }

        while (words < end)
        {
            *words++ = ~0UL;
        }
    }

    /// <summary>The mask with bits <paramref name="low"/> to <paramref name="high"/> set, both included.</summary>
    internal static ulong RangeMask(int low, int high) => (~0UL << low) & (~0UL >> (63 - high));
}
