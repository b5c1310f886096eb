// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Internal;
using DirtyLog.Tracking;

namespace DirtyLog.Mapping;

/// <summary>
/// Receives an IOVA tracker's bitmap and marks the guest pages it stands for in the shared bitmap: each run of set
/// bits becomes one IOVA range, and each mapping it overlaps one guest range mark, not one mark per page.
/// </summary>
/// <remarks>One per read; the table it translates with must not change while it is used (the caller holds the lock).</remarks>
internal sealed class TranslatingSink : IDirtyGranuleSink
{
    private readonly MappingTable _table;
    private readonly SparseDirtyBitmap _target;
    private readonly List<IovaMapping> _overlap = [];
    private IovaMapping _last;

    public TranslatingSink(MappingTable table, SparseDirtyBitmap target)
    {
        _table = table;
        _target = target;
    }

    /// <summary>Guest pages marked.</summary>
    public ulong PagesMarked { get; private set; }

    /// <summary>Dirty IOVA bytes no mapping covered (bits logged at an IOVA after its unmap, and the like).</summary>
    public ulong UntranslatedBytes { get; private set; }

    public void Accept(ulong address, long granuleSize, ReadOnlySpan<ulong> bitmap, ulong bitCount)
    {
        ulong granule = (ulong)granuleSize;
        int words = (int)((bitCount + 63) / 64);
        ref ulong head = ref MemoryMarshal.GetReference(bitmap);
        for (int w = 0; w < words; w++)
        {
            // Reports are mostly zero: skip them eight words at a time.
            if ((w & 7) == 0 && w + 8 <= words && WordScan.NonZeroMask8(ref Unsafe.Add(ref head, w)) == 0)
            {
                w += 7;
                continue;
            }

            ulong bits = bitmap[w];
            if (w == words - 1 && (bitCount & 63) != 0)
            {
                bits &= (1UL << (int)(bitCount & 63)) - 1;
            }

            while (bits != 0)
            {
                int start = BitOperations.TrailingZeroCount(bits);
                int length = BitOperations.TrailingZeroCount(~(bits >> start));
                ulong first = ((ulong)w * 64) + (ulong)start;
                Translate(address + (first * granule), address + ((first + (ulong)length) * granule));
                int end = start + length;
                bits = end >= 64 ? 0 : bits & (~0UL << end);
            }
        }
    }

    /// <summary>Marks the guest pages behind IOVA range [<paramref name="start"/>, <paramref name="end"/>).</summary>
    public void Translate(ulong start, ulong end)
    {
        if (_last.Length != 0 && _last.Contains(start) && end <= _last.End)
        {
            Mark(_last, start, end);
            return;
        }

        _overlap.Clear();
        _table.CollectOverlapping(start, end, _overlap);
        ulong covered = 0;
        foreach (IovaMapping m in _overlap)
        {
            ulong s = Math.Max(start, m.Iova), e = Math.Min(end, m.End);
            Mark(m, s, e);
            covered += e - s;
            _last = m;
        }

        UntranslatedBytes += end - start - covered;
    }

    /// <summary>Marks every page of <paramref name="target"/> that [<paramref name="address"/>, + <paramref name="length"/>) touches.</summary>
    /// <returns>Pages marked.</returns>
    internal static ulong MarkBytes(SparseDirtyBitmap target, ulong address, ulong length)
    {
        int shift = target.PageShift;
        ulong firstPage = address >> shift;
        ulong pages = ((address + length - 1) >> shift) - firstPage + 1;
        target.MarkRange(firstPage, pages);
        return pages;
    }

    private void Mark(IovaMapping mapping, ulong start, ulong end) => PagesMarked += MarkBytes(_target, mapping.Translate(start), end - start);
}
