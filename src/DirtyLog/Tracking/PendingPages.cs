// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking;

/// <summary>
/// The pages of one memory slot harvested from KVM's dirty rings and not yet read: a plain bitmap (bit per page) with
/// a summary bit per 64 words, so that reading a clean slot skips it 4,096 pages at a time.
/// </summary>
/// <remarks>
/// Not thread-safe: its owner calls it under one lock. Plain bit operations are enough there, which is the point: a
/// ring entry costs one OR, not an atomic tree walk. 32 KiB per GiB of slot plus 1/64 of that.
/// </remarks>
internal sealed class PendingPages
{
    private readonly ulong[] _words;
    private readonly ulong[] _summary;

    public PendingPages(ulong firstPage, ulong pages)
    {
        FirstPage = firstPage;
        Pages = pages;
        _words = new ulong[(pages + 63) / 64];
        _summary = new ulong[(_words.Length + 63) / 64];
    }

    /// <summary>The bit per page (for the ring tracker's inlined recorder).</summary>
    internal ulong[] Words => _words;

    /// <summary>The bit per 64 words of <see cref="Words"/>.</summary>
    internal ulong[] Summary => _summary;

    /// <summary>The guest page of offset 0.</summary>
    public ulong FirstPage { get; }

    /// <summary>Pages in the slot.</summary>
    public ulong Pages { get; }

    /// <summary>Marks one page, by its offset in the slot (checked by the caller).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public void Mark(ulong offset)
    {
        ulong w = offset >> 6;
        _words[w] |= 1UL << (int)(offset & 63);
        _summary[w >> 6] |= 1UL << (int)(w & 63);
    }

    /// <summary>Marks every page of the slot.</summary>
    public void MarkAll()
    {
        _words.AsSpan().Fill(~0UL);
        if ((Pages & 63) != 0)
        {
            _words[^1] = (1UL << (int)(Pages & 63)) - 1;
        }

        _summary.AsSpan().Fill(~0UL);
    }

    /// <summary>
    /// Moves the marks of pages [<paramref name="from"/>, <paramref name="from"/> + <paramref name="count"/>) (slot
    /// offsets) into <paramref name="destination"/>, whose bit 0 is page <paramref name="from"/>, and clears them here.
    /// </summary>
    /// <returns>Whether any page was marked.</returns>
    public bool Take(ulong from, ulong count, Span<ulong> destination)
    {
        destination[..(int)((count + 63) / 64)].Clear();
        if (count == 0)
        {
            return false;
        }

        ulong end = from + count;
        int shift = (int)(from & 63);
        ulong firstWord = from >> 6;
        ulong lastWord = (end - 1) >> 6;
        bool any = false;
        for (ulong w = firstWord; w <= lastWord;)
        {
            ulong group = w >> 6;
            if (_summary[group] == 0)
            {
                w = (group + 1) << 6; // a clean group of 64 words
                continue;
            }

            ulong groupEnd = Math.Min((group + 1) << 6, lastWord + 1);
            if (shift == 0 && w == group << 6 && groupEnd == (group + 1) << 6 && (lastWord != groupEnd - 1 || (end & 63) == 0))
            {
                // A whole group of 64 words, aligned with the destination: move it in one go.
                Span<ulong> source = _words.AsSpan((int)w, 64);
                source.CopyTo(destination[(int)(w - firstWord)..]);
                source.Clear();
                _summary[group] = 0;
                any = true;
                w = groupEnd;
                continue;
            }

            bool taken = false;
            for (; w < groupEnd; w++)
            {
                ulong mask = ~0UL;
                if (w == firstWord)
                {
                    mask &= ~0UL << shift;
                }

                if (w == lastWord && (end & 63) != 0)
                {
                    mask &= (1UL << (int)(end & 63)) - 1;
                }

                ulong bits = _words[w] & mask;
                if (bits == 0)
                {
                    continue;
                }

                _words[w] &= ~mask;
                taken = true;
                int k = (int)(w - firstWord);
                destination[k] |= bits >> shift;
                if (shift != 0 && k > 0)
                {
                    destination[k - 1] |= bits << (64 - shift);
                }
            }

            if (taken)
            {
                any = true;
                if (_words.AsSpan((int)(group << 6), (int)Math.Min(64, (ulong)_words.Length - (group << 6))).IndexOfAnyExcept(0UL) < 0)
                {
                    _summary[group] = 0;
                }
            }
        }

        return any;
    }

    /// <summary>Whether no page is marked.</summary>
    public bool IsEmpty => _summary.AsSpan().IndexOfAnyExcept(0UL) < 0;
}
