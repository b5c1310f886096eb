// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;

namespace DirtyLog.Harvesting;

/// <summary>
/// Who reported what in a round: the pages only one tracker reported, per tracker, and the pages several did. One
/// sweep over the edges of every tracker's runs, so the cost follows runs, not pages.
/// </summary>
/// <remarks>Pure and thread-safe. Each tracker's runs must be disjoint (they come from one harvest of its own bitmap).</remarks>
internal static class RoundAttribution
{
    /// <summary>Attributes one round.</summary>
    /// <param name="runs">Per tracker, its runs; <see langword="null"/> for a tracker that did not read in the round.</param>
    /// <param name="exclusive">Receives, per tracker, the pages no other tracker reported.</param>
    /// <returns>The pages more than one tracker reported.</returns>
    public static ulong Compute(IReadOnlyList<IReadOnlyList<DirtyRun>?> runs, Span<ulong> exclusive)
    {
        if (exclusive.Length < runs.Count)
        {
            throw new ArgumentException($"{exclusive.Length} slots for {runs.Count} trackers.", nameof(exclusive));
        }

        var edges = new List<(ulong Page, int Delta, int Tracker)>();
        for (int i = 0; i < runs.Count; i++)
        {
            foreach (DirtyRun run in runs[i] ?? [])
            {
                edges.Add((run.FirstPage, +1, i));
                edges.Add((run.EndPage, -1, i));
            }
        }

        // Ends before starts at the same page: touching runs of two trackers do not overlap.
        edges.Sort((a, b) => a.Page != b.Page ? a.Page.CompareTo(b.Page) : a.Delta.CompareTo(b.Delta));
        exclusive[..runs.Count].Clear();
        ulong several = 0;
        int active = 0;
        long activeSum = 0; // with one tracker active, its index
        ulong last = 0;
        foreach ((ulong page, int delta, int tracker) in edges)
        {
            if (active == 1)
            {
                exclusive[(int)activeSum] += page - last;
            }
            else if (active > 1)
            {
                several += page - last;
            }

            active += delta;
            activeSum += delta * tracker;
            last = page;
        }

        return several;
    }
}
