// Licensed under the MIT License. See LICENSE in the repository root.

using System.Numerics;
using System.Runtime.CompilerServices;
using System.Threading;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>
/// Prefetch for the flat layout's walk: a cursor that runs <see cref="Distance"/> dirty lines ahead of the walk across
/// leaf boundaries. In the flat layout a leaf's words and line summary are found by arithmetic, not through a pointer,
/// so the cursor needs no loads but the line summaries it reads (plainly: they are hints, the walk takes them later).
/// </summary>
internal unsafe struct CrossLeafLookahead : ILineLookahead
{
    /// <summary>How many dirty lines ahead of the current one the walk asks for.</summary>
    internal const int Distance = 16;

    private readonly ulong* _words;
    private readonly ulong* _lineSummaries;
    private ulong _leafBase;
    private ulong _leaves;
    private ulong* _leaf;
    private ulong _lines;

    public CrossLeafLookahead(ulong* words, ulong* lineSummaries)
    {
        _words = words;
        _lineSummaries = lineSummaries;
    }

    /// <summary>The walk is about to visit leaves <paramref name="leafBase"/> + each set bit of <paramref name="leaves"/>: run ahead into them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Queue(ulong leafBase, ulong leaves)
    {
        _leafBase = leafBase;
        _leaves = leaves;
        _lines = 0;
        for (int k = 0; k < Distance; k++)
        {
            Advance();
        }
    }

    /// <summary>Nothing to do: the cursor already ran into this leaf.</summary>
    public readonly void EnterLeaf(ulong* leaf, ulong lines)
    {
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Advance()
    {
        while (_lines == 0)
        {
            if (_leaves == 0)
            {
                return;
            }

            ulong leaf = _leafBase + (ulong)BitOperations.TrailingZeroCount(_leaves);
            _leaves &= _leaves - 1;
            _leaf = _words + (leaf << LeafWordShift);
            _lines = Volatile.Read(ref _lineSummaries[leaf]);
        }

        LeafWalk.Prefetch(_leaf + (BitOperations.TrailingZeroCount(_lines) * LineWords));
        _lines &= _lines - 1;
    }
}
