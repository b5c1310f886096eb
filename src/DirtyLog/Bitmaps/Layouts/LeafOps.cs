// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Threading;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>
/// The geometry both layouts share, and the writes into one leaf: a leaf is 512 words (32,768 pages, 4 KiB) with a
/// line summary word beside it, bit <c>l</c> set when its 64-byte line <c>l</c> (8 words, 512 pages) may hold a dirty page.
/// </summary>
internal static unsafe class LeafOps
{
    internal const int WordShift = 6;
    internal const int LeafWordShift = 9;
    internal const int LeafWords = 1 << LeafWordShift;
    internal const int LeafPageShift = WordShift + LeafWordShift;
    internal const ulong LeafPageMask = (1UL << LeafPageShift) - 1;
    internal const int LineWords = 8;
    internal const int LinePageShift = WordShift + 3;
    internal const int FanoutShift = 6;
    internal const int Fanout = 1 << FanoutShift;

    /// <summary>Sets <paramref name="mask"/> in <paramref name="target"/>, with no atomic when the bits are already there.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void SetBits(ref ulong target, ulong mask)
    {
        if ((Volatile.Read(ref target) & mask) != mask)
        {
            Interlocked.Or(ref target, mask);
        }
    }

    /// <summary>The mask with bits <paramref name="low"/> to <paramref name="high"/> set, both included.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong RangeMask(int low, int high) => (~0UL << low) & (~0UL >> (63 - high));

    /// <summary>
    /// Sets the pages [<paramref name="first"/>, <paramref name="end"/>) of one leaf and returns the mask of lines touched;
    /// <paramref name="storedPlainly"/> tells whether plain stores still await a fence.
    /// </summary>
    /// <remarks>
    /// An atomic OR for each partially covered word, a plain store of all ones for each fully covered one. A plain store is
    /// safe because all ones is the result any racing OR would produce, and a racing harvest's exchange either returns the
    /// bits or leaves them for the next round; the caller fences before it publishes the lines.
    /// </remarks>
    internal static ulong SetLeafRange(ulong* leaf, int first, int end, out bool storedPlainly)
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
}
