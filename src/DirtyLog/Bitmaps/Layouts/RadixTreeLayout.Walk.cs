// Licensed under the MIT License. See LICENSE in the repository root.

using System.Numerics;
using System.Threading;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>The tree's walk: summary bits top-down through the nodes, then the shared leaf walk.</summary>
internal sealed unsafe partial class RadixTreeLayout
{
    /// <summary>Walks the pages [<paramref name="lo"/>, <paramref name="hi"/>) into <paramref name="acc"/>.</summary>
    /// <returns><see langword="false"/> when the sink refused a run; every summary bit not fully walked was put back.</returns>
    public bool Walk<TMode, TSink>(ulong lo, ulong hi, ref RunAccumulator<TSink> acc)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        var ahead = default(LeafLookahead);
        return WalkNode<TMode, TSink>(_root, _height, 0, lo, hi, ref acc, ref ahead);
    }

    private static bool WalkNode<TMode, TSink>(TreeNode* node, int level, ulong first, ulong lo, ulong hi,
        ref RunAccumulator<TSink> acc, ref LeafLookahead ahead)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        int childShift = LeafPageShift + (FanoutShift * (level - 1));
        LeafWalk.SplitChildren(first, childShift, lo, hi, out ulong full, out ulong partial);
        ulong taken = LeafWalk.TakeSummary<TMode>(ref node->Summary, full);
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
                ? WalkLeaf<TMode, TSink>(ref TreeNode.LineSummaryOf(node, c), (ulong*)child, childFirst, lo, hi, ref acc, ref ahead)
                : WalkNode<TMode, TSink>((TreeNode*)child, level - 1, childFirst, lo, hi, ref acc, ref ahead);
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

    /// <summary>Walks one leaf: takes its line summary, then each dirty line's words.</summary>
    /// <returns><see langword="false"/> when the sink refused a run; the lines not yet walked are then put back.</returns>
    private static bool WalkLeaf<TMode, TSink>(ref ulong lineSummary, ulong* leaf, ulong first, ulong lo, ulong hi,
        ref RunAccumulator<TSink> acc, ref LeafLookahead ahead)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        LeafWalk.SplitChildren(first, LinePageShift, lo, hi, out ulong full, out ulong partial);
        ulong taken = LeafWalk.TakeSummary<TMode>(ref lineSummary, full);
        ulong todo = taken | (partial & Volatile.Read(ref lineSummary));
        ahead.EnterLeaf(leaf, todo);
        if (LeafWalk.WalkLines<TMode, TSink, LeafLookahead>(leaf, first, lo, hi, full, todo, ref acc, ref ahead, out ulong unwalked))
        {
            return true;
        }

        if (TMode.Clears && (taken & unwalked) != 0)
        {
            Interlocked.Or(ref lineSummary, taken & unwalked);
        }

        return false;
    }

    /// <summary>Asks for the first dirty lines of the leaf the walk visits next, so that entering it does not stall.</summary>
    private static void PrefetchLeafStart(TreeNode* bottom, int leafIndex)
    {
        ulong* leaf = (ulong*)Volatile.Read(ref TreeNode.ChildSlot(bottom, leafIndex));
        ulong lines = Volatile.Read(ref TreeNode.LineSummaryOf(bottom, leafIndex));
        for (int k = 0; k < LeafLookahead.Distance / 2 && lines != 0; k++)
        {
            LeafWalk.Prefetch(leaf + (BitOperations.TrailingZeroCount(lines) * LineWords));
            lines &= lines - 1;
        }
    }
}
