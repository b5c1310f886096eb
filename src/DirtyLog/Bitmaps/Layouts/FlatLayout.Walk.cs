// Licensed under the MIT License. See LICENSE in the repository root.

using System.Numerics;
using System.Threading;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>The flat layout's walk: summary bits top-down by index arithmetic, then the shared leaf walk.</summary>
internal sealed unsafe partial class FlatLayout
{
    /// <summary>Walks the pages [<paramref name="lo"/>, <paramref name="hi"/>) into <paramref name="acc"/>.</summary>
    /// <returns><see langword="false"/> when the sink refused a run; every summary bit not fully walked was put back.</returns>
    public bool Walk<TMode, TSink>(ulong lo, ulong hi, ref RunAccumulator<TSink> acc)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        var ahead = new CrossLeafLookahead(_words, _level1);
        if (_height == 1)
        {
            ahead.Queue(0, 1);
            return LeafWalk.WalkLeaf<TMode, TSink, CrossLeafLookahead>(ref _level1[0], _words, 0, lo, hi, ref acc, ref ahead);
        }

        return WalkLevel<TMode, TSink>(_height, 0, 0, lo, hi, ref acc, ref ahead);
    }

    /// <summary>Walks word <paramref name="index"/> of summary level <paramref name="level"/> (2 or above), which spans from page <paramref name="first"/>.</summary>
    private bool WalkLevel<TMode, TSink>(int level, ulong index, ulong first, ulong lo, ulong hi,
        ref RunAccumulator<TSink> acc, ref CrossLeafLookahead ahead)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        ref ulong summary = ref Level(level)[index];
        int childShift = LeafPageShift + (FanoutShift * (level - 2));
        LeafWalk.SplitChildren(first, childShift, lo, hi, out ulong full, out ulong partial);
        ulong taken = LeafWalk.TakeSummary<TMode>(ref summary, full);
        ulong todo = taken | (partial & Volatile.Read(ref summary));
        ulong childBase = index << FanoutShift;
        if (level == 2)
        {
            ahead.Queue(childBase, todo);
        }

        while (todo != 0)
        {
            int c = BitOperations.TrailingZeroCount(todo);
            ulong bit = 1UL << c;
            todo &= todo - 1;
            ulong child = childBase + (ulong)c;
            ulong childFirst = first + ((ulong)c << childShift);
            bool ok = level == 2
                ? LeafWalk.WalkLeaf<TMode, TSink, CrossLeafLookahead>(ref _level1[child], _words + (child << LeafWordShift), childFirst, lo, hi, ref acc, ref ahead)
                : WalkLevel<TMode, TSink>(level - 1, child, childFirst, lo, hi, ref acc, ref ahead);
            if (!ok)
            {
                // Stopped below: give back the bits taken here and not yet fully walked, the current child's
                // included (it may still hold pages after the stop). Bottom-up, as markers publish.
                if (TMode.Clears && (taken & (bit | todo)) != 0)
                {
                    Interlocked.Or(ref summary, taken & (bit | todo));
                }

                return false;
            }
        }

        return true;
    }
}
