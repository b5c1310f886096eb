// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Numerics;
using DirtyLog.Bitmaps;

namespace DirtyLog.Tracking;

/// <summary>Merges read chunks into a <see cref="SparseDirtyBitmap"/> of the same address space.</summary>
internal sealed class BitmapGranuleSink : IDirtyGranuleSink
{
    private readonly SparseDirtyBitmap _target;

    public BitmapGranuleSink(SparseDirtyBitmap target) => _target = target;

    public void Accept(ulong address, long granuleSize, ReadOnlySpan<ulong> bitmap, ulong bitCount)
    {
        int shift = BitOperations.Log2((ulong)granuleSize) - _target.PageShift;
        _target.MergeBitmap(bitmap, address >> _target.PageShift, bitCount, shift);
    }
}
