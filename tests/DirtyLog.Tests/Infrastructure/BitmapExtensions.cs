// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using DirtyLog.Bitmaps;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>Test conveniences over the sink-based API.</summary>
internal static class BitmapExtensions
{
    public static List<DirtyRun> HarvestRuns(this SparseDirtyBitmap bitmap)
    {
        var sink = new RunCollector();
        HarvestResult result = bitmap.Harvest(ref sink);
        NUnit.Framework.Assert.That(result.Completed, NUnit.Framework.Is.True, "an unlimited sink never stops a harvest");
        return sink.Runs;
    }

    public static List<DirtyRun> PeekRuns(this SparseDirtyBitmap bitmap)
    {
        var sink = new RunCollector();
        bitmap.Peek(ref sink);
        return sink.Runs;
    }

    public static List<DirtyRun> HarvestRangeRuns(this SparseDirtyBitmap bitmap, ulong first, ulong count)
    {
        var sink = new RunCollector();
        bitmap.HarvestRange(first, count, ref sink);
        return sink.Runs;
    }

    /// <summary>The sorted runs that a set of pages forms: the reference the bitmap's output must equal.</summary>
    public static List<DirtyRun> ToRuns(this IEnumerable<ulong> pages)
    {
        var sorted = new SortedSet<ulong>(pages);
        var runs = new List<DirtyRun>();
        ulong start = 0, count = 0;
        foreach (ulong p in sorted)
        {
            if (count != 0 && p == start + count)
            {
                count++;
                continue;
            }

            if (count != 0)
            {
                runs.Add(new DirtyRun(start, count));
            }

            start = p;
            count = 1;
        }

        if (count != 0)
        {
            runs.Add(new DirtyRun(start, count));
        }

        return runs;
    }

    /// <summary>Harvests every dirty page into <paramref name="pages"/> (the ground-truth checks compare page sets).</summary>
    public static void HarvestInto(this SparseDirtyBitmap bitmap, HashSet<ulong> pages)
    {
        var sink = new PageSetSink(pages);
        bitmap.Harvest(ref sink);
    }

    private readonly struct PageSetSink : IDirtyRunSink
    {
        private readonly HashSet<ulong> _pages;

        public PageSetSink(HashSet<ulong> pages) => _pages = pages;

        public bool TryAccept(DirtyRun run)
        {
            for (ulong p = run.FirstPage; p < run.EndPage; p++)
            {
                _pages.Add(p);
            }

            return true;
        }
    }
}
