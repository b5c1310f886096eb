// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using System.Threading;
using DirtyLog.Internal;

namespace DirtyLog.Bitmaps;

/// <summary>Harvest (read and clear), peek and count: one walk over the summaries, specialised per mode and sink.</summary>
public sealed unsafe partial class SparseDirtyBitmap
{
    /// <summary>Reads and clears every dirty page, handing maximal runs to <paramref name="sink"/> in ascending order.</summary>
    /// <typeparam name="TSink">The sink type; a struct sink costs no allocation and no virtual call.</typeparam>
    /// <param name="sink">Receives the runs; its state is written back when the call returns.</param>
    /// <returns>What was handed over, and whether the walk completed.</returns>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <remarks>
    /// Clean regions cost nothing: the walk follows summary bits only, so a clean bitmap of any size is
    /// harvested in a few reads. Each dirty word is taken with one atomic exchange. If the sink refuses a run,
    /// that run and everything the walk had not yet handed over stay dirty (the result says
    /// <see cref="HarvestResult.Completed"/> = <see langword="false"/>). An exception thrown by the sink
    /// propagates; the pages of runs not yet accepted are then lost to this harvest, so sinks should not throw.
    /// </remarks>
    public HarvestResult Harvest<TSink>(ref TSink sink)
        where TSink : IDirtyRunSink, allows ref struct
        => Walk<HarvestWalk, TSink>(0, _rootSpan, ref sink);

    /// <summary>Reads and clears the dirty pages of a range, handing runs to <paramref name="sink"/>.</summary>
    /// <typeparam name="TSink">The sink type.</typeparam>
    /// <param name="firstPage">The first page of the range.</param>
    /// <param name="pageCount">The number of pages in the range.</param>
    /// <param name="sink">Receives the runs, clipped to the range.</param>
    /// <returns>What was handed over, and whether the walk completed.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The range overflows or ends past <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <remarks>Pages outside the range are left untouched, even those sharing a word with the range's ends.</remarks>
    public HarvestResult HarvestRange<TSink>(ulong firstPage, ulong pageCount, ref TSink sink)
        where TSink : IDirtyRunSink, allows ref struct
    {
        CheckRange(firstPage, pageCount, nameof(pageCount));
        return pageCount == 0 ? new HarvestResult(0, 0, true) : Walk<HarvestWalk, TSink>(firstPage, firstPage + pageCount, ref sink);
    }

    /// <summary>Reads and clears dirty pages into <paramref name="destination"/> until it is full.</summary>
    /// <param name="destination">The buffer; <see cref="HarvestResult.Runs"/> tells how many entries were written.</param>
    /// <returns>What was written; <see cref="HarvestResult.Completed"/> is <see langword="false"/> when the buffer filled up and pages remain dirty.</returns>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    public HarvestResult Harvest(Span<DirtyRun> destination)
    {
        var sink = new SpanRunSink(destination);
        return Harvest(ref sink);
    }

    /// <summary>Reads the dirty pages without clearing them, handing runs to <paramref name="sink"/>.</summary>
    /// <typeparam name="TSink">The sink type.</typeparam>
    /// <param name="sink">Receives the runs.</param>
    /// <returns>What was handed over.</returns>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <remarks>A snapshot only in the absence of writers: marks racing a peek may or may not be seen.</remarks>
    public HarvestResult Peek<TSink>(ref TSink sink)
        where TSink : IDirtyRunSink, allows ref struct
        => Walk<PeekWalk, TSink>(0, _rootSpan, ref sink);

    /// <summary>Reads the dirty pages of a range without clearing them.</summary>
    /// <typeparam name="TSink">The sink type.</typeparam>
    /// <param name="firstPage">The first page of the range.</param>
    /// <param name="pageCount">The number of pages in the range.</param>
    /// <param name="sink">Receives the runs, clipped to the range.</param>
    /// <returns>What was handed over.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The range overflows or ends past <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    public HarvestResult PeekRange<TSink>(ulong firstPage, ulong pageCount, ref TSink sink)
        where TSink : IDirtyRunSink, allows ref struct
    {
        CheckRange(firstPage, pageCount, nameof(pageCount));
        return pageCount == 0 ? new HarvestResult(0, 0, true) : Walk<PeekWalk, TSink>(firstPage, firstPage + pageCount, ref sink);
    }

    /// <summary>Counts the dirty pages without clearing them.</summary>
    /// <returns>The number of dirty pages seen.</returns>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    public ulong Count()
    {
        var sink = default(DiscardingRunSink);
        return Peek(ref sink).Pages;
    }

    /// <summary>Counts the dirty pages of a range without clearing them.</summary>
    /// <param name="firstPage">The first page of the range.</param>
    /// <param name="pageCount">The number of pages in the range.</param>
    /// <returns>The number of dirty pages seen in the range.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The range overflows or ends past <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    public ulong CountRange(ulong firstPage, ulong pageCount)
    {
        var sink = default(DiscardingRunSink);
        return PeekRange(firstPage, pageCount, ref sink).Pages;
    }

    private HarvestResult Walk<TMode, TSink>(ulong lo, ulong hi, ref TSink sink)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        TreeNode* root = Root;
        var acc = new RunAccumulator<TSink>(sink);
        bool completed = WalkNode<TMode, TSink>(root, _height, 0, lo, hi, ref acc) && acc.Finish();
        sink = acc.Sink;
        if (!completed && TMode.Clears)
        {
            // The refused run was taken from the words already: mark it again. Everything after it was put
            // back (or never taken) while the walk unwound.
            DirtyRun refused = acc.Refused;
            MarkRangeUnchecked(root, refused.FirstPage, refused.EndPage);
        }

        return new HarvestResult(acc.Pages, acc.Runs, completed);
    }

    /// <summary>Takes (harvest) or reads (peek) the bits of <paramref name="mask"/> in a summary word.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong TakeSummary<TMode>(ref ulong summary, ulong mask)
        where TMode : struct, IWalkMode
    {
        ulong seen = Volatile.Read(ref summary) & mask;
        if (!TMode.Clears || seen == 0)
        {
            return seen;
        }

        return mask == ~0UL ? Interlocked.Exchange(ref summary, 0) : Interlocked.And(ref summary, ~mask) & mask;
    }

    /// <summary>
    /// Splits the children of a span into those fully inside [<paramref name="lo"/>, <paramref name="hi"/>),
    /// whose summary bits may be taken, and the (at most two) partially covered ones, which are visited
    /// without clearing their bit, since they may hold dirty pages outside the range.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SplitChildren(ulong first, int childShift, ulong lo, ulong hi, out ulong full, out ulong partial)
    {
        ulong childMask = (1UL << childShift) - 1;
        ulong spanEnd = first + (childMask + 1) * NodeFanout;
        ulong a = Math.Max(lo, first) - first;
        ulong b = Math.Min(hi, spanEnd) - first;
        int low = (int)(a >> childShift);
        int high = (int)((b - 1) >> childShift);
        partial = 0;
        if ((a & childMask) != 0)
        {
            partial |= 1UL << low;
        }

        if ((b & childMask) != 0)
        {
            partial |= 1UL << high;
        }

        full = RangeMask(low, high) & ~partial;
    }

    private bool WalkNode<TMode, TSink>(TreeNode* node, int level, ulong first, ulong lo, ulong hi, ref RunAccumulator<TSink> acc)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        int childShift = LeafPageShift + (NodeFanoutShift * (level - 1));
        SplitChildren(first, childShift, lo, hi, out ulong full, out ulong partial);
        ulong taken = TakeSummary<TMode>(ref node->Summary, full);
        ulong todo = taken | (partial & Volatile.Read(ref node->Summary));
        while (todo != 0)
        {
            int c = BitOperations.TrailingZeroCount(todo);
            ulong bit = 1UL << c;
            todo &= todo - 1;

            // A set summary bit implies the child was published (it is created before any of its bits are set).
            ulong child = Volatile.Read(ref TreeNode.ChildSlot(node, c));
            if (level == 1 && todo != 0)
            {
                PrefetchLeafStart(node, BitOperations.TrailingZeroCount(todo));
            }

            ulong childFirst = first + ((ulong)c << childShift);
            bool ok = level == 1
                ? WalkLeaf<TMode, TSink>(ref TreeNode.LineSummaryOf(node, c), (ulong*)child, childFirst, lo, hi, ref acc)
                : WalkNode<TMode, TSink>((TreeNode*)child, level - 1, childFirst, lo, hi, ref acc);
            if (!ok)
            {
                // Stopped below: give back the bits taken here and not yet fully walked, the current child's
                // included (it may still hold pages after the stop). Bottom-up, as markers publish.
                if (TMode.Clears && (taken & (bit | todo)) != 0)
                {
                    Interlocked.Or(ref node->Summary, taken & (bit | todo));
                }

                return false;
            }
        }

        return true;
    }

    private static bool WalkLeaf<TMode, TSink>(ref ulong lineSummary, ulong* leaf, ulong first, ulong lo, ulong hi, ref RunAccumulator<TSink> acc)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        SplitChildren(first, LinePageShift, lo, hi, out ulong full, out ulong partial);
        ulong taken = TakeSummary<TMode>(ref lineSummary, full);
        ulong todo = taken | (partial & Volatile.Read(ref lineSummary));

        // Each atomic exchange waits for the misses before it, so a scattered dirty line would cost a whole
        // memory latency; the summary tells which lines come next, so fetch them ahead of the exchanges.
        ulong ahead = todo;
        for (int k = 0; k < PrefetchLines && ahead != 0; k++)
        {
            Prefetch(leaf + (BitOperations.TrailingZeroCount(ahead) * LineWords));
            ahead &= ahead - 1;
        }

        while (todo != 0)
        {
            int l = BitOperations.TrailingZeroCount(todo);
            ulong bit = 1UL << l;
            todo &= todo - 1;
            if (ahead != 0)
            {
                Prefetch(leaf + (BitOperations.TrailingZeroCount(ahead) * LineWords));
                ahead &= ahead - 1;
            }
            ulong* line = leaf + (l * LineWords);
            ulong lineFirst = first + ((ulong)l << LinePageShift);
            bool ok = (full & bit) != 0
                ? WalkFullLine<TMode, TSink>(line, lineFirst, ref acc)
                : WalkPartialLine<TMode, TSink>(line, lineFirst, lo, hi, ref acc);
            if (!ok)
            {
                if (TMode.Clears && (taken & (bit | todo)) != 0)
                {
                    Interlocked.Or(ref lineSummary, taken & (bit | todo));
                }

                return false;
            }
        }

        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool WalkFullLine<TMode, TSink>(ulong* line, ulong first, ref RunAccumulator<TSink> acc)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        uint nonZero = WordScan.NonZeroMask8(ref *line);
        while (nonZero != 0)
        {
            int w = BitOperations.TrailingZeroCount(nonZero);
            nonZero &= nonZero - 1;
            ref ulong word = ref line[w];
            ulong bits = TMode.Clears ? Interlocked.Exchange(ref word, 0) : Volatile.Read(ref word);
            if (!EmitWord<TMode, TSink>(ref word, bits, first + ((ulong)w << WordShift), ref acc))
            {
                return false;
            }
        }

        return true;
    }

    private static bool WalkPartialLine<TMode, TSink>(ulong* line, ulong first, ulong lo, ulong hi, ref RunAccumulator<TSink> acc)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        for (int w = 0; w < LineWords; w++)
        {
            ulong wordFirst = first + ((ulong)w << WordShift);
            if (wordFirst + 64 <= lo || wordFirst >= hi)
            {
                continue;
            }

            ulong mask = ~0UL;
            if (lo > wordFirst)
            {
                mask &= ~0UL << (int)(lo - wordFirst);
            }

            if (hi < wordFirst + 64)
            {
                mask &= ~0UL >> (int)(wordFirst + 64 - hi);
            }

            ref ulong word = ref line[w];
            ulong bits = Volatile.Read(ref word) & mask;
            if (bits != 0 && TMode.Clears)
            {
                bits = Interlocked.And(ref word, ~mask) & mask;
            }

            if (!EmitWord<TMode, TSink>(ref word, bits, wordFirst, ref acc))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>How many dirty lines ahead of the current one a walk asks the memory system for.</summary>
    private const int PrefetchLines = 8;

    /// <summary>Asks for the first dirty lines of the leaf the walk visits next, so that entering it does not stall.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchLeafStart(TreeNode* bottom, int leafIndex)
    {
        ulong* leaf = (ulong*)Volatile.Read(ref TreeNode.ChildSlot(bottom, leafIndex));
        ulong lines = Volatile.Read(ref TreeNode.LineSummaryOf(bottom, leafIndex));
        for (int k = 0; k < PrefetchLines / 2 && lines != 0; k++)
        {
            Prefetch(leaf + (BitOperations.TrailingZeroCount(lines) * LineWords));
            lines &= lines - 1;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(void* address)
    {
        if (Sse.IsSupported)
        {
            Sse.Prefetch0(address);
        }
    }

    /// <summary>Hands the runs of one word to the accumulator; on refusal a harvest ORs back what was not handed over.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool EmitWord<TMode, TSink>(ref ulong word, ulong bits, ulong first, ref RunAccumulator<TSink> acc)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        if (bits == ~0UL)
        {
            if (acc.Append(first, 64))
            {
                return true;
            }
        }
        else
        {
            while (bits != 0)
            {
                int start = BitOperations.TrailingZeroCount(bits);
                int length = BitOperations.TrailingZeroCount(~(bits >> start));
                if (!acc.Append(first + (ulong)start, (ulong)length))
                {
                    break;
                }

                int end = start + length;
                bits = end >= 64 ? 0 : bits & (~0UL << end);
            }

            if (bits == 0)
            {
                return true;
            }
        }

        if (TMode.Clears)
        {
            Interlocked.Or(ref word, bits);
        }

        return false;
    }
}
