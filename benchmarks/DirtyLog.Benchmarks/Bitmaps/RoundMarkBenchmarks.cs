// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;

namespace DirtyLog.Benchmarks.Bitmaps;

/// <summary>How the single marks of one round land after the previous harvest.</summary>
public enum RoundMarks
{
    /// <summary>0.1% of the pages, uniformly random: nearly every mark is the first of its 64-byte line.</summary>
    Random0_1,

    /// <summary>One page in every 512 (one per 64-byte line of the bitmap, 0.2%): every mark is a line's first.</summary>
    StridedPerLine,

    /// <summary>1% of the pages in whole 2 MiB clusters, page by page: a line's first mark is followed by 511 more.</summary>
    Clustered1,
}

/// <summary>
/// The marks of a real round, as the issue of the bitmap's cost asks them measured: single-page marks at a round's
/// density, right after a harvest (which cleared every summary) and with cold caches (a 128 MiB stream between), into
/// a 1 TiB guest's bitmap, against the dense bitmap of atomic words (QEMU's layout) in the same run. The older
/// <see cref="RandomMarkBenchmarks"/> marks 2^20 pages into each cleared bitmap, so most of its marks find their
/// summaries set by an earlier mark; these do not.
/// </summary>
[InvocationCount(1)]
public class RoundMarkBenchmarks
{
    private GuestBitmaps _bitmaps = null!;
    private ulong[] _pages = [];
    private ulong[] _previousRound = [];

    /// <summary>Where the round's marks land.</summary>
    [Params(RoundMarks.Random0_1, RoundMarks.StridedPerLine, RoundMarks.Clustered1)]
    public RoundMarks Marks { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _bitmaps = new GuestBitmaps();
        _previousRound = DirtyPatterns.Build(DirtyPattern.Random1);
        var random = new XorShift(11);
        ulong pages = DirtyPatterns.GuestPages;
        _pages = Marks switch
        {
            RoundMarks.Random0_1 => Random(random, pages / 1000, pages),
            RoundMarks.StridedPerLine => Strided(pages, 512),
            RoundMarks.Clustered1 => Clustered(random, pages / 100, pages),
            _ => throw new ArgumentOutOfRangeException(nameof(Marks)),
        };
    }

    /// <summary>The previous round's harvest took everything; then the guest's writes meet cold caches.</summary>
    [IterationSetup]
    public void AfterAHarvest()
    {
        _bitmaps.Sparse.MergeBitmap(_previousRound, 0, DirtyPatterns.GuestPages);
        _bitmaps.Clear(); // a harvest of both: every summary cleared
        CacheEvictor.Evict();
    }

    [GlobalCleanup]
    public void Cleanup() => _bitmaps.Dispose();

    [Benchmark(Baseline = true)]
    public int Dense()
    {
        ulong[] pages = _pages;
        for (int i = 0; i < pages.Length; i++)
        {
            _bitmaps.Dense.Mark(pages[i]);
        }

        return pages.Length;
    }

    [Benchmark]
    public int Sparse()
    {
        ulong[] pages = _pages;
        for (int i = 0; i < pages.Length; i++)
        {
            _bitmaps.Sparse.Mark(pages[i]);
        }

        return pages.Length;
    }

    private static ulong[] Random(XorShift random, ulong count, ulong pages)
    {
        var result = new ulong[count];
        for (ulong i = 0; i < count; i++)
        {
            result[i] = random.Below(pages);
        }

        return result;
    }

    private static ulong[] Strided(ulong pages, ulong stride)
    {
        var result = new ulong[pages / stride];
        for (ulong i = 0; i < (ulong)result.Length; i++)
        {
            result[i] = (i * stride) + 7;
        }

        return result;
    }

    private static ulong[] Clustered(XorShift random, ulong count, ulong pages)
    {
        var result = new ulong[count];
        for (ulong i = 0; i < count; i += 512)
        {
            ulong first = random.Below(pages / 512) * 512;
            for (ulong j = 0; j < 512 && i + j < count; j++)
            {
                result[i + j] = first + j;
            }
        }

        return result;
    }
}
