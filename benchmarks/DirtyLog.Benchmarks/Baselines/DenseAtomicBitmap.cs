// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Threading;
using DirtyLog.Bitmaps;

namespace DirtyLog.Benchmarks.Baselines;

/// <summary>
/// The baseline: one dense bitmap of atomically updated 64-bit words for the whole guest, the way QEMU keeps
/// its global dirty memory bitmap. Mark is one atomic OR (QEMU's <c>set_bit_atomic</c>); a range is an atomic
/// OR on the partial end words, plain stores of all ones in between and a full fence (<c>bitmap_set_atomic</c>);
/// a kernel bitmap merge ORs every non-zero word atomically (<c>cpu_physical_memory_set_dirty_lebitmap</c>);
/// a harvest walks every word, exchanges the non-zero ones with zero and enumerates their runs with
/// trailing-zero counts. That harvest is stronger than QEMU's own, which exchanges into a second bitmap
/// and then enumerates page by page (see research/peers.md section 2c).
/// </summary>
internal sealed unsafe class DenseAtomicBitmap : IDisposable
{
    private readonly ulong* _words;

    public DenseAtomicBitmap(ulong pages)
    {
        WordCount = (long)((pages + 63) / 64);
        _words = (ulong*)NativeMemory.AlignedAlloc((nuint)(WordCount * 8), 64);
        Clear();
    }

    public long WordCount { get; }

    public Span<ulong> Words => new(_words, checked((int)WordCount));

    public void Clear() => NativeMemory.Clear(_words, (nuint)(WordCount * 8));

    public void Mark(ulong page) => Interlocked.Or(ref _words[page >> 6], 1UL << (int)(page & 63));

    public void MarkRange(ulong first, ulong count)
    {
        ulong end = first + count;
        ulong w = first >> 6, last = (end - 1) >> 6;
        ulong headMask = ~0UL << (int)(first & 63);
        ulong tailMask = ~0UL >> (int)(63 - ((end - 1) & 63));
        if (w == last)
        {
            Interlocked.Or(ref _words[w], headMask & tailMask);
            return;
        }

        Interlocked.Or(ref _words[w], headMask);
        for (w++; w < last; w++)
        {
            _words[w] = ~0UL;
        }

        Interlocked.MemoryBarrier();
        Interlocked.Or(ref _words[last], tailMask);
    }

    /// <summary>Merges a word-aligned kernel bitmap at <paramref name="firstWord"/>.</summary>
    public void Merge(ReadOnlySpan<ulong> bitmap, ulong firstWord)
    {
        for (int i = 0; i < bitmap.Length; i++)
        {
            ulong v = bitmap[i];
            if (v != 0)
            {
                Interlocked.Or(ref _words[firstWord + (ulong)i], v);
            }
        }
    }

    public HarvestResultCounts Harvest<TSink>(ref TSink sink)
        where TSink : IDirtyRunSink
    {
        ulong start = 0, count = 0, pages = 0, runs = 0;
        for (long w = 0; w < WordCount; w++)
        {
            if (_words[w] == 0)
            {
                continue;
            }

            ulong bits = Interlocked.Exchange(ref _words[w], 0);
            ulong basePage = (ulong)w << 6;
            while (bits != 0)
            {
                int s = BitOperations.TrailingZeroCount(bits);
                int n = BitOperations.TrailingZeroCount(~(bits >> s));
                ulong runStart = basePage + (ulong)s;
                if (count != 0 && start + count == runStart)
                {
                    count += (ulong)n;
                }
                else
                {
                    if (count != 0)
                    {
                        sink.TryAccept(new DirtyRun(start, count));
                        pages += count;
                        runs++;
                    }

                    start = runStart;
                    count = (ulong)n;
                }

                int e = s + n;
                bits = e >= 64 ? 0 : bits & (~0UL << e);
            }
        }

        if (count != 0)
        {
            sink.TryAccept(new DirtyRun(start, count));
            pages += count;
            runs++;
        }

        return new HarvestResultCounts(pages, runs);
    }

    public void Dispose() => NativeMemory.AlignedFree(_words);
}

/// <summary>Pages and runs handed over by a baseline harvest.</summary>
internal readonly record struct HarvestResultCounts(ulong Pages, ulong Runs);
