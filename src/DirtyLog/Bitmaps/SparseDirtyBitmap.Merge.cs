// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using DirtyLog.Internal;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps;

/// <summary>OR-merging bitmaps in the kernel's format.</summary>
public sealed unsafe partial class SparseDirtyBitmap
{
    /// <summary>
    /// ORs a bitmap in the kernel's format into this one: bit <c>i</c> of <paramref name="bitmap"/>
    /// (little-endian 64-bit words, bit 0 of word 0 first) marks page <paramref name="firstPage"/> + <c>i</c>.
    /// </summary>
    /// <param name="bitmap">The words, as <c>KVM_GET_DIRTY_LOG</c>, <c>IOMMU_HWPT_GET_DIRTY_BITMAP</c> and VFIO's DMA logging report return them.</param>
    /// <param name="firstPage">The page of bit 0; need not be a multiple of 64.</param>
    /// <param name="pageCount">How many bits of <paramref name="bitmap"/> count; bits past it are ignored.</param>
    /// <exception cref="ArgumentException"><paramref name="bitmap"/> has fewer than ceil(<paramref name="pageCount"/> / 64) words.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The page range overflows or ends past <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <remarks>
    /// Zero words are skipped eight at a time with SIMD and cost no write and no allocation: merging a clean
    /// slot's bitmap allocates nothing. Each partial destination word gets at most one atomic OR, none when it
    /// already holds the bits; a full word gets a plain store; then one summary update per leaf touched (an atomic
    /// OR that also fences the plain stores).
    /// </remarks>
    public void MergeBitmap(ReadOnlySpan<ulong> bitmap, ulong firstPage, ulong pageCount)
    {
        ThrowIfDisposed();
        CheckRange(firstPage, pageCount, nameof(pageCount));
        ulong wordsNeeded = (pageCount + 63) / 64;
        if ((ulong)bitmap.Length < wordsNeeded)
        {
            ThrowHelper.ThrowBitmapTooShort(nameof(bitmap), bitmap.Length, pageCount);
        }

        if (pageCount == 0)
        {
            return;
        }

        if ((firstPage & 63) == 0)
        {
            MergeAligned(bitmap, firstPage, pageCount);
            return;
        }

        var merger = new LeafCursor(this);
        var source = new SourceWords(bitmap[..(int)wordsNeeded], pageCount, (int)(firstPage & 63));
        ulong destFirstWord = firstPage >> WordShift;
        int destWords = source.DestinationWordCount;
        ref ulong src = ref MemoryMarshal.GetReference(bitmap);

        // Destination word j takes source words j and j - 1 (when the start is not word-aligned), so it needs
        // work when either is non-zero. Vector tests cover full chunks of 8 source words before the last one,
        // which is masked; the tail goes word by word.
        int vectorEnd = (source.Length - 1) & ~7;
        uint carry = 0;
        for (int chunk = 0; chunk < vectorEnd; chunk += 8)
        {
            uint nonZero = WordScan.NonZeroMask8(ref Unsafe.Add(ref src, chunk));
            uint needed = source.Shift == 0 ? nonZero : (nonZero | (nonZero << 1) | carry) & 0xFF;
            carry = (nonZero >> 7) & 1;
            while (needed != 0)
            {
                int j = chunk + System.Numerics.BitOperations.TrailingZeroCount(needed);
                needed &= needed - 1;
                merger.Or(destFirstWord + (ulong)j, source.Destination(j));
            }
        }

        for (int j = vectorEnd; j < destWords; j++)
        {
            ulong value = source.Destination(j);
            if (value != 0)
            {
                merger.Or(destFirstWord + (ulong)j, value);
            }
        }

        merger.Finish();
    }

    /// <summary>
    /// ORs a bitmap whose bits each stand for 2^<paramref name="pagesPerBitShift"/> pages, as a tracker with a coarser
    /// granule than this bitmap's pages reports (a device that granted 2 MiB pages, a 2 MiB IOMMU entry).
    /// </summary>
    /// <param name="bitmap">Kernel-format words: bit <c>i</c> marks pages <paramref name="firstPage"/> + (i &lt;&lt; shift) onward.</param>
    /// <param name="firstPage">The first page of bit 0.</param>
    /// <param name="bitCount">How many bits count.</param>
    /// <param name="pagesPerBitShift">log2 of the pages per bit; 0 is <see cref="MergeBitmap(ReadOnlySpan{ulong}, ulong, ulong)"/>.</param>
    /// <exception cref="ArgumentException"><paramref name="bitmap"/> is too short.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The shift is negative or above 63, or the pages covered overflow or end past <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <remarks>Consecutive set bits become one range mark, so a fully dirty coarse bitmap costs one word pass.</remarks>
    public void MergeBitmap(ReadOnlySpan<ulong> bitmap, ulong firstPage, ulong bitCount, int pagesPerBitShift)
    {
        if (pagesPerBitShift == 0)
        {
            MergeBitmap(bitmap, firstPage, bitCount);
            return;
        }

        ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfNegative(pagesPerBitShift);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(pagesPerBitShift, 63);
        if (bitCount > (ulong.MaxValue >> pagesPerBitShift))
        {
            ThrowHelper.ThrowRangeOutOfRange(nameof(bitCount), firstPage, ulong.MaxValue, _pageCount);
        }

        CheckRange(firstPage, bitCount << pagesPerBitShift, nameof(bitCount));
        if ((ulong)bitmap.Length < (bitCount + 63) / 64)
        {
            ThrowHelper.ThrowBitmapTooShort(nameof(bitmap), bitmap.Length, bitCount);
        }

        ulong runStart = 0, runLength = 0;
        ref ulong src = ref MemoryMarshal.GetReference(bitmap);
        int words = (int)((bitCount + 63) / 64);
        for (int w = 0; w < words; w++)
        {
            if ((w & 7) == 0 && w + 8 <= words && WordScan.NonZeroMask8(ref Unsafe.Add(ref src, w)) == 0)
            {
                w += 7;
                continue;
            }

            ulong bits = Unsafe.Add(ref src, w);
            if (w == words - 1 && (bitCount & 63) != 0)
            {
                bits &= (1UL << (int)(bitCount & 63)) - 1;
            }

            while (bits != 0)
            {
                int start = System.Numerics.BitOperations.TrailingZeroCount(bits);
                int length = System.Numerics.BitOperations.TrailingZeroCount(~(bits >> start));
                ulong bit = ((ulong)w * 64) + (ulong)start;
                if (runLength != 0 && runStart + runLength == bit)
                {
                    runLength += (ulong)length;
                }
                else
                {
                    if (runLength != 0)
                    {
                        MarkRangeUnchecked(firstPage + (runStart << pagesPerBitShift), firstPage + ((runStart + runLength) << pagesPerBitShift));
                    }

                    runStart = bit;
                    runLength = (ulong)length;
                }

                int end = start + length;
                bits = end >= 64 ? 0 : bits & (~0UL << end);
            }
        }

        if (runLength != 0)
        {
            MarkRangeUnchecked(firstPage + (runStart << pagesPerBitShift), firstPage + ((runStart + runLength) << pagesPerBitShift));
        }
    }

    /// <summary>
    /// The merge of a bitmap whose first page starts a word, as a memory slot's always does: source word <c>j</c> is
    /// destination word <c>j</c>, so each leaf's share is one tight loop (a zero test per word, a plain store for a full
    /// word, an atomic OR otherwise) and one publication of its lines.
    /// </summary>
    private void MergeAligned(ReadOnlySpan<ulong> bitmap, ulong firstPage, ulong pageCount)
    {
        ulong firstWord = firstPage >> WordShift;
        int count = (int)((pageCount + 63) / 64);
        ulong lastMask = (pageCount & 63) == 0 ? ~0UL : (1UL << (int)(pageCount & 63)) - 1;
        ref ulong source = ref MemoryMarshal.GetReference(bitmap);
        int j = 0;
        while (j < count)
        {
            ulong global = firstWord + (ulong)j;
            ulong leafIndex = global >> LeafWordShift;
            int from = (int)(global & (LeafWords - 1));
            int end = Math.Min(LeafWords, from + (count - j));
            ulong* leaf = null;
            nint context = 0;
            ulong lineMask = 0;
            bool storedPlainly = false;
            for (int w = from; w < end; w++, j++)
            {
                if ((j & 7) == 0 && j + 8 < count && w + 8 <= end && WordScan.NonZeroMask8(ref Unsafe.Add(ref source, j)) == 0)
                {
                    // Eight clean words with one vector test: a lightly dirty slot is mostly these.
                    w += 7;
                    j += 7;
                    continue;
                }

                ulong value = Unsafe.Add(ref source, j);
                if (j == count - 1)
                {
                    value &= lastMask;
                }

                if (value == 0)
                {
                    continue;
                }

                if (leaf == null)
                {
                    leaf = OpenLeaf(leafIndex, out context);
                }

                if (value == ~0UL)
                {
                    // All ones is what any racing OR would give; the fence comes once per leaf, with the publication.
                    leaf[w] = ~0UL;
                    storedPlainly = true;
                }
                else
                {
                    SetBits(ref leaf[w], value);
                }

                lineMask |= 1UL << (w / LineWords);
            }

            if (lineMask != 0)
            {
                PublishLeaf(context, leafIndex, lineMask, storedPlainly);
            }
        }
    }

    /// <summary>The source bitmap seen as destination-aligned words.</summary>
    private readonly ref struct SourceWords
    {
        private readonly ReadOnlySpan<ulong> _words;
        private readonly ulong _lastMask;

        public SourceWords(ReadOnlySpan<ulong> words, ulong pageCount, int shift)
        {
            _words = words;
            int tailBits = (int)(pageCount & 63);
            _lastMask = tailBits == 0 ? ~0UL : (1UL << tailBits) - 1;
            Shift = shift;
            ulong lastDestBit = (ulong)shift + pageCount - 1;
            DestinationWordCount = (int)(lastDestBit >> WordShift) + 1;
        }

        public int Shift { get; }

        public int Length => _words.Length;

        public int DestinationWordCount { get; }

        private ulong Source(int i)
        {
            if ((uint)i >= (uint)_words.Length)
            {
                return 0;
            }

            ulong w = _words[i];
            return i == _words.Length - 1 ? w & _lastMask : w;
        }

        /// <summary>Destination word <paramref name="j"/> (counted from the word holding the first page).</summary>
        public ulong Destination(int j) => Shift == 0
            ? Source(j)
            : (Source(j) << Shift) | (Source(j - 1) >> (64 - Shift));
    }

    /// <summary>Walks destination words in ascending order, one leaf at a time, publishing each leaf's lines once.</summary>
    private ref struct LeafCursor
    {
        private readonly SparseDirtyBitmap _owner;
        private ulong* _leaf;
        private nint _context;
        private ulong _leafIndex;
        private ulong _lineMask;
        private bool _storedPlainly;

        public LeafCursor(SparseDirtyBitmap owner)
        {
            _owner = owner;
            _leafIndex = ulong.MaxValue;
        }

        public void Or(ulong globalWord, ulong value)
        {
            ulong leafIndex = globalWord >> LeafWordShift;
            if (leafIndex != _leafIndex)
            {
                Finish();
                _leaf = _owner.OpenLeaf(leafIndex, out _context);
                _leafIndex = leafIndex;
            }

            int w = (int)(globalWord & (LeafWords - 1));
            if (value == ~0UL)
            {
                // A full word: a plain store, as MarkRange does (all ones is what any racing OR would give);
                // the fence comes once per leaf, in Finish.
                _leaf[w] = ~0UL;
                _storedPlainly = true;
            }
            else
            {
                SetBits(ref _leaf[w], value);
            }

            _lineMask |= 1UL << (w / LineWords);
        }

        public void Finish()
        {
            if (_lineMask != 0)
            {
                _owner.PublishLeaf(_context, _leafIndex, _lineMask, _storedPlainly);
                _storedPlainly = false;
                _lineMask = 0;
            }
        }
    }
}
