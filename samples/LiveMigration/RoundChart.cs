// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using System.Linq;
using ScottPlot;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>The rounds as a PNG: dirty pages per round as bars (left axis), each tracker's harvest latency as a line (right axis).</summary>
internal static class RoundChart
{
    public static void Write(string path, IReadOnlyList<RoundRow> rows, IReadOnlyList<string> trackers)
    {
        var plot = new Plot();
        double[] rounds = [.. rows.Select(r => (double)r.Round)];
        double[] pages = [.. rows.Select(r => (double)r.DirtyPages)];
        var bars = plot.Add.Bars(rounds, pages);
        bars.LegendText = "dirty pages";
        plot.Axes.Left.Label.Text = "dirty pages";
        plot.Axes.Bottom.Label.Text = "round";
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericFixedInterval(1); // rounds are whole numbers
        plot.Axes.Right.Label.Text = "harvest latency (ms)";
        foreach (string tracker in trackers)
        {
            RoundRow[] read = [.. rows.Where(r => r.Trackers.Any(t => t.Tracker == tracker))];
            if (read.Length == 0)
            {
                continue;
            }

            double[] xs = [.. read.Select(r => (double)r.Round)];
            double[] ys = [.. read.Select(r => r.Trackers.First(t => t.Tracker == tracker).Latency.TotalMilliseconds)];
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = tracker;
            line.Axes.YAxis = plot.Axes.Right;
        }

        plot.Title("DirtyLog live migration: dirty pages and harvest latency per round");
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(path, 1000, 520);
    }
}
