// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Numerics;
using System.Threading;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>The flat layout's walk: summary bytes top-down by index arithmetic, a barrier below each level taken, then the words.</summary>
internal sealed unsafe partial class FlatLayout
{
    /// <summary>Walks the pages [<paramref name="lo"/>, <paramref name="hi"/>) into <paramref name="acc"/>.</summary>
    /// <returns><see langword="false"/> when the sink refused a run; every summary byte not fully walked was put back.</returns>
    public bool Walk<TMode, TSink>(ulong lo, ulong hi, ref RunAccumulator<TSink> acc)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        if (_height > 1)
        {
            return WalkLevel<TMode, TSink>(_height, 0, _topCount, lo, hi, ref acc);
        }

        // The line bytes are the top level: visit every leaf the range overlaps (at most 128).
        ulong firstLeaf = lo >> LeafPageShift;
        ulong endLeaf = Math.Min(((hi - 1) >> LeafPageShift) + 1, Math.Max(1, _topCount >> FanoutShift));
        ulong* leaves = stackalloc ulong[2];
        leaves[0] = 0;
        leaves[1] = 0;
        for (ulong leaf = firstLeaf; leaf < endLeaf; leaf++)
        {
            leaves[(int)((leaf - firstLeaf) >> 6)] |= 1UL << (int)(leaf - firstLeaf);
        }

        var ahead = new LineByteLookahead(_words, _level1, firstLeaf, leaves, 2);
        for (ulong leaf = firstLeaf; leaf < endLeaf; leaf++)
        {
            if (!WalkLeaf<TMode, TSink>(leaf, lo, hi, ref acc, ref ahead))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Walks bytes [<paramref name="firstIndex"/>, <paramref name="firstIndex"/> + <paramref name="count"/>) of summary level
    /// <paramref name="level"/> (2 or above): takes those inside the range (reads those it only overlaps), then, after a
    /// process-wide barrier, walks what lies below each set one in ascending order.
    /// </summary>
    private bool WalkLevel<TMode, TSink>(int level, ulong firstIndex, ulong count, ulong lo, ulong hi, ref RunAccumulator<TSink> acc)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        int shift = LinePageShift + (FanoutShift * (level - 1));
        byte* bytes = Level(level);
        ulong a = Math.Max(firstIndex, lo >> shift);
        ulong b = Math.Min(firstIndex + count, ((hi - 1) >> shift) + 1);
        if (a >= b)
        {
            return true;
        }

        int n = (int)(b - a);
        int setWords = (n + 63) >> 6;
        ulong* todo = stackalloc ulong[setWords];
        ulong* taken = stackalloc ulong[setWords];
        new Span<ulong>(todo, setWords).Clear();
        new Span<ulong>(taken, setWords).Clear();
        bool tookAny = false;
        for (ulong i = a; i < b; i++)
        {
            if ((i & 7) == 0 && i + 8 <= b && Volatile.Read(ref *(ulong*)(bytes + i)) == 0)
            {
                i += 7;
                continue;
            }

            if (Volatile.Read(ref bytes[i]) == 0)
            {
                continue;
            }

            int k = (int)(i - a);
            bool inside = (i << shift) >= lo && ((i + 1) << shift) <= hi;
            if (TMode.Clears && inside)
            {
                if (Interlocked.Exchange(ref bytes[i], 0) == 0)
                {
                    continue;
                }

                taken[k >> 6] |= 1UL << k;
                tookAny = true;
            }

            todo[k >> 6] |= 1UL << k;
        }

        if (tookAny)
        {
            // A marker stores a byte below, then loads this level's byte; the processor may reorder the two. After this
            // barrier every marker that loaded a taken byte as set has its store below visible to the reads that follow,
            // and every marker that has not loaded it yet will find it clear and set it again.
            Interlocked.MemoryBarrierProcessWide();
        }

        var ahead = level == 2 ? new LineByteLookahead(_words, _level1, a, todo, setWords) : default;
        for (int w = 0; w < setWords; w++)
        {
            ulong bits = todo[w];
            while (bits != 0)
            {
                int k = (w * 64) + BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
                ulong index = a + (ulong)k;
                bool ok = level == 2
                    ? WalkLeaf<TMode, TSink>(index, lo, hi, ref acc, ref ahead)
                    : WalkLevel<TMode, TSink>(level - 1, index << FanoutShift, Fanout, lo, hi, ref acc);
                if (!ok)
                {
                    // Stopped below: give back the bytes taken here and not yet fully walked, the current one included
                    // (it may still hold pages after the stop). Bottom-up, as markers publish.
                    if (TMode.Clears)
                    {
                        PutBack(bytes + a, taken, setWords, k);
                    }

                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>Walks one leaf: takes its line bytes (those inside the range), then each dirty line's words.</summary>
    private bool WalkLeaf<TMode, TSink>(ulong leaf, ulong lo, ulong hi, ref RunAccumulator<TSink> acc, ref LineByteLookahead ahead)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        ulong first = leaf << LeafPageShift;
        byte* lineBytes = _level1 + (leaf << FanoutShift);
        ulong* words = _words + (leaf << LeafWordShift);
        LeafWalk.SplitChildren(first, LinePageShift, lo, hi, out ulong full, out ulong partial);
        ulong dirty = LineBytes.NonZero(lineBytes) & (full | partial);
        ulong taken = 0;
        if (TMode.Clears)
        {
            ulong wanted = dirty & full;
            for (int g = 0; wanted != 0; g += 8, wanted >>= 8)
            {
                if ((wanted & 0xFF) == 0)
                {
                    continue;
                }

                if (((full >> g) & 0xFF) == 0xFF)
                {
                    taken |= LineBytes.Flags(Interlocked.Exchange(ref *(ulong*)(lineBytes + g), 0)) << g;
                    continue;
                }

                for (ulong bytesOfGroup = wanted & 0xFF; bytesOfGroup != 0; bytesOfGroup &= bytesOfGroup - 1)
                {
                    int l = g + BitOperations.TrailingZeroCount(bytesOfGroup);
                    if (Interlocked.Exchange(ref lineBytes[l], 0) != 0)
                    {
                        taken |= 1UL << l;
                    }
                }
            }
        }

        ulong todo = TMode.Clears ? taken | (dirty & partial) : dirty;
        if (todo == ~0UL && full == ~0UL)
        {
            if (LeafWalk.WalkDenseLeaf<TMode, TSink>(words, first, ref acc))
            {
                return true;
            }

            // Refused: the dense walk put back the words it had not handed over; every line byte goes back with them
            // (a line walked to the end is clean now, and a clean line under a set byte costs a look, never a page).
            if (TMode.Clears)
            {
                PutBackLines(lineBytes, taken);
            }

            return false;
        }

        if (LeafWalk.WalkLines<TMode, TSink, LineByteLookahead>(words, first, lo, hi, full, todo, ref acc, ref ahead, out ulong unwalked))
        {
            return true;
        }

        if (TMode.Clears)
        {
            PutBackLines(lineBytes, taken & unwalked);
        }

        return false;
    }

    /// <summary>Sets again the line bytes of <paramref name="lines"/>.</summary>
    private static void PutBackLines(byte* lineBytes, ulong lines)
    {
        for (; lines != 0; lines &= lines - 1)
        {
            Volatile.Write(ref lineBytes[BitOperations.TrailingZeroCount(lines)], 1);
        }
    }

    /// <summary>Sets again every byte of <paramref name="taken"/> from bit <paramref name="from"/> on.</summary>
    private static void PutBack(byte* bytes, ulong* taken, int setWords, int from)
    {
        for (int w = from >> 6; w < setWords; w++)
        {
            ulong bits = taken[w];
            if (w == from >> 6)
            {
                bits &= ~0UL << (from & 63);
            }

            for (; bits != 0; bits &= bits - 1)
            {
                Volatile.Write(ref bytes[(w * 64) + BitOperations.TrailingZeroCount(bits)], 1);
            }
        }
    }
}
