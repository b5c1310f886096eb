// Licensed under the MIT License. See LICENSE in the repository root.

using System.Numerics;
using System.Runtime.CompilerServices;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>Prefetch within one leaf: its first dirty lines on entry, then one more per line walked (the radix tree's walk).</summary>
internal unsafe struct LeafLookahead : ILineLookahead
{
    /// <summary>How many dirty lines ahead of the current one the walk asks for.</summary>
    internal const int Distance = 8;

    private ulong* _leaf;
    private ulong _lines;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void EnterLeaf(ulong* leaf, ulong lines)
    {
        _leaf = leaf;
        _lines = lines;
        for (int k = 0; k < Distance && _lines != 0; k++)
        {
            Advance();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Advance()
    {
        if (_lines != 0)
        {
            LeafWalk.Prefetch(_leaf + (BitOperations.TrailingZeroCount(_lines) * LineWords));
            _lines &= _lines - 1;
        }
    }
}
