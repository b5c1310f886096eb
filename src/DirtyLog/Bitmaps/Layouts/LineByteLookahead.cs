// Licensed under the MIT License. See LICENSE in the repository root.

using System.Numerics;
using System.Runtime.CompilerServices;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>
/// Prefetch for the flat layout's walk: a cursor that runs <see cref="Distance"/> dirty lines ahead of the walk through
/// the set of leaves it will visit, across leaf boundaries. Each atomic exchange of a harvest waits for the misses
/// before it, so a scattered dirty line would cost a whole memory latency; the line bytes tell which lines come next.
/// The cursor reads them plainly: they are hints, the walk takes them later.
/// </summary>
internal unsafe struct LineByteLookahead : ILineLookahead
{
    /// <summary>How many dirty lines ahead of the current one the walk asks for.</summary>
    internal const int Distance = 16;

    private readonly ulong* _words;
    private readonly byte* _lineBytes;
    private readonly ulong* _leaves;
    private readonly int _leafWords;
    private readonly ulong _firstLeaf;
    private int _word;
    private ulong _bits;
    private ulong* _leaf;
    private ulong _lines;

    /// <summary>A cursor over leaves (<paramref name="leafWords"/> words of bits at <paramref name="leaves"/>, which must outlive it): <paramref name="firstLeaf"/> + each set bit, started <see cref="Distance"/> lines ahead.</summary>
    public LineByteLookahead(ulong* words, byte* lineBytes, ulong firstLeaf, ulong* leaves, int leafWords)
    {
        _words = words;
        _lineBytes = lineBytes;
        _leaves = leaves;
        _leafWords = leafWords;
        _firstLeaf = firstLeaf;
        _word = -1;
        for (int k = 0; k < Distance; k++)
        {
            Advance();
        }
    }

    /// <summary>The walk moves on by one line of a leaf that is not fully dirty: fetch one more ahead.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Advance()
    {
        while (_lines == 0)
        {
            if (!NextLeaf())
            {
                return;
            }
        }

        LeafWalk.Prefetch(_leaf + (BitOperations.TrailingZeroCount(_lines) * LineWords));
        _lines &= _lines - 1;
    }

    private bool NextLeaf()
    {
        while (_bits == 0)
        {
            if (++_word >= _leafWords)
            {
                return false;
            }

            _bits = _leaves[_word];
        }

        ulong leaf = _firstLeaf + ((ulong)_word * 64) + (ulong)BitOperations.TrailingZeroCount(_bits);
        _bits &= _bits - 1;
        _leaf = _words + (leaf << LeafWordShift);
        _lines = LineBytes.NonZero(_lineBytes + (leaf << FanoutShift));
        if (_lines == ~0UL)
        {
            // A fully dirty leaf is 4 KiB of consecutive words, which the hardware prefetcher streams by itself and the
            // walk streams without advancing this cursor: pass over it.
            _lines = 0;
        }

        return true;
    }
}
