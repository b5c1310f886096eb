// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using ScottPlot;

namespace DirtyLog.Benchmarks.Charts;

/// <summary>
/// Each case's median as a ratio to its baseline's median, measured in the same run, as one horizontal bar per case
/// on a log scale with a line at 1 (the baseline): left of it faster, right of it slower.
/// </summary>
internal static class RatioChart
{
    /// <summary>Draws <paramref name="ratios"/> (label, ratio) into a PNG at <paramref name="path"/>.</summary>
    public static void Write(string path, string title, string baseline, IReadOnlyList<(string Label, double Ratio)> ratios)
    {
        ArgumentOutOfRangeException.ThrowIfZero(ratios.Count);
        var plot = new Plot();
        // A log scale: ratios here run from a hundredth (a clean harvest) to tens (a dictionary against a bitmap), and a
        // ratio of 2 must look as far from 1 as a ratio of 0.5.
        double floor = Math.Floor(Math.Log10(ratios.Min(r => r.Ratio)) - 0.05);
        double ceiling = Math.Ceiling(Math.Log10(ratios.Max(r => r.Ratio)) + 0.05);
        // Top to bottom in the order given: ScottPlot's y grows upwards, so the first case sits highest.
        var bars = ratios.Select((r, i) => new Bar
        {
            Position = ratios.Count - 1 - i,
            // From the baseline's line to the ratio, counted in decades above the floor (ScottPlot's axis starts at 0):
            // a faster case reaches left of the line, a slower one right.
            Value = Math.Log10(r.Ratio) - floor,
            ValueBase = -floor,
            FillColor = r.Ratio <= 1.0 ? Colors.SeaGreen : Colors.IndianRed,
            Label = r.Ratio.ToString(r.Ratio < 0.1 ? "0.000" : "0.00", CultureInfo.InvariantCulture),
        }).ToList();
        var plottable = plot.Add.Bars(bars);
        plottable.Horizontal = true;
        plottable.ValueLabelStyle.FontSize = 11;
        plot.Add.VerticalLine(-floor, 2, Colors.Black, LinePattern.Dashed);
        double[] ticks = [.. Enumerable.Range((int)floor, (int)(ceiling - floor) + 1)
            .SelectMany(decade => new[] { decade, decade + Math.Log10(2), decade + Math.Log10(5) })
            .Where(t => t <= ceiling)];
        plot.Axes.Bottom.SetTicks([.. ticks.Select(t => t - floor)], [.. ticks.Select(t => Math.Pow(10, t).ToString("0.###", CultureInfo.InvariantCulture))]);
        plot.Axes.Left.SetTicks([.. Enumerable.Range(0, ratios.Count).Select(i => (double)(ratios.Count - 1 - i))], [.. ratios.Select(r => r.Label)]);
        plot.Axes.Left.MajorTickStyle.Length = 0;
        plot.Axes.Bottom.Label.Text = $"median / median of {baseline}, same run, log scale (1: as fast; left of it: faster)";
        plot.Axes.SetLimitsX(0, ceiling - floor + 0.4);
        plot.Axes.Margins(bottom: 0.02, top: 0.02);
        plot.Title(title);
        int height = Math.Max(360, 90 + (ratios.Count * 26));
        plot.SavePng(path, 1100, height);
    }
}
