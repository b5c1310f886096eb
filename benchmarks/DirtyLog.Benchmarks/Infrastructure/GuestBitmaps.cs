// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Benchmarks.Baselines;
using DirtyLog.Bitmaps;

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>
/// The two bitmaps every comparison uses for a 1 TiB guest: ours, with every leaf already allocated (the steady
/// state after a first round), and the dense baseline. Both are filled, cleared and harvested the same way.
/// </summary>
internal sealed class GuestBitmaps : IDisposable
{
    public GuestBitmaps()
    {
        Sparse = new SparseDirtyBitmap(40);
        Sparse.MarkRange(0, DirtyPatterns.GuestPages);
        Dense = new DenseAtomicBitmap(DirtyPatterns.GuestPages);
        Clear();
    }

    public SparseDirtyBitmap Sparse { get; }

    public DenseAtomicBitmap Dense { get; }

    /// <summary>Clears both, keeping the sparse bitmap's leaves.</summary>
    public void Clear()
    {
        HarvestSparse();
        Dense.Clear();
    }

    /// <summary>Fills the dense bitmap with <paramref name="pattern"/> and evicts the caches.</summary>
    public void FillDense(ulong[] pattern)
    {
        pattern.AsSpan().CopyTo(Dense.Words);
        CacheEvictor.Evict();
    }

    /// <summary>Clears the sparse bitmap, fills it with <paramref name="pattern"/> and evicts the caches.</summary>
    public void FillSparse(ulong[] pattern)
    {
        HarvestSparse();
        Sparse.MergeBitmap(pattern, 0, DirtyPatterns.GuestPages);
        CacheEvictor.Evict();
    }

    public ulong HarvestDense()
    {
        var sink = default(CountingSink);
        Dense.Harvest(ref sink);
        return sink.Pages;
    }

    public ulong HarvestSparse()
    {
        var sink = default(CountingSink);
        Sparse.Harvest(ref sink);
        return sink.Pages;
    }

    public void Dispose()
    {
        Sparse.Dispose();
        Dense.Dispose();
    }
}
