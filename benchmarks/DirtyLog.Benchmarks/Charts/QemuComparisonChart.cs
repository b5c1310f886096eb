// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json;
using ScottPlot;
using SkiaSharp;

namespace DirtyLog.Benchmarks.Charts;

/// <summary>
/// The comparison with QEMU as one PNG: total time (left) and downtime (right, on a log scale: the two systems'
/// downtimes differ by up to two orders of magnitude), QEMU and DirtyLog side by side for every row. Drawn by
/// <c>benchmarks/qemu/compare.py --chart FILE.png</c> through <c>DirtyLog.Benchmarks chart-qemu-comparison IN.json OUT.png</c>.
/// </summary>
internal static class QemuComparisonChart
{
    public const string Command = "chart-qemu-comparison";

    private static readonly Color Qemu = Color.FromHex("#4472c4");
    private static readonly Color DirtyLog = Color.FromHex("#ed7d31");
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>The command: <c>chart-qemu-comparison IN.json OUT.png</c>; 0 when drawn, 2 on bad arguments or input.</summary>
    public static int Run(string[] args)
    {
        if (args.Length != 2)
        {
            Console.Error.WriteLine($"usage: {Command} RESULTS.json CHART.png");
            return 2;
        }

        ComparisonFile? file;
        try
        {
            file = JsonSerializer.Deserialize<ComparisonFile>(File.ReadAllText(args[0]), Json);
        }
        catch (Exception e) when (e is IOException or JsonException)
        {
            Console.Error.WriteLine($"{args[0]}: {e.Message}");
            return 2;
        }

        if (file is null || file.Rows is null || file.Rows.Count == 0)
        {
            Console.Error.WriteLine($"{args[0]}: no rows");
            return 2;
        }

        Write(args[1], file);
        Console.WriteLine($"chart: {args[1]}");
        return 0;
    }

    private static void Write(string path, ComparisonFile file)
    {
        const int PanelWidth = 760;
        int height = 520;
        string subtitle = $"{file.Date}, {file.Machine}; medians";
        Plot total = Panel(file.Rows, r => (r.QemuTotalMs / 1000, r.DirtyLogTotalMs / 1000), logarithmic: false, "total time (s)", "0.00");
        total.Title($"Live migration, QEMU against DirtyLog: total time\n{subtitle}", size: 13);
        Plot downtime = Panel(file.Rows, r => (r.QemuDowntimeMs, r.DirtyLogDowntimeMs), logarithmic: true, "downtime (ms, log scale)", "0.0");
        downtime.Title($"Live migration, QEMU against DirtyLog: downtime\n{subtitle}", size: 13);

        using var surface = SKSurface.Create(new SKImageInfo(PanelWidth * 2, height));
        surface.Canvas.Clear(SKColors.White);
        Draw(surface.Canvas, total, 0, PanelWidth, height);
        Draw(surface.Canvas, downtime, PanelWidth, PanelWidth, height);
        using SKImage image = surface.Snapshot();
        using SKData png = image.Encode(SKEncodedImageFormat.Png, 100);
        using FileStream output = File.Create(path);
        png.SaveTo(output);
    }

    private static void Draw(SKCanvas canvas, Plot plot, int left, int width, int height)
    {
        byte[] bytes = plot.GetImage(width, height).GetImageBytes(ImageFormat.Png);
        using SKBitmap bitmap = SKBitmap.Decode(bytes);
        canvas.DrawBitmap(bitmap, left, 0);
    }

    private static Plot Panel(IReadOnlyList<ComparisonRow> rows, Func<ComparisonRow, (double Qemu, double DirtyLog)> value, bool logarithmic, string axis, string format)
    {
        var plot = new Plot();
        var bars = new List<Bar>();
        const double Floor = -1; // log10 of 0.1 ms: a log panel's bars start there, and its values count decades from it
        for (int i = 0; i < rows.Count; i++)
        {
            (double qemu, double dirtyLog) = value(rows[i]);
            bars.Add(Column(i * 3, qemu, Qemu));
            bars.Add(Column((i * 3) + 1, dirtyLog, DirtyLog));
        }

        plot.Add.Bars(bars);
        plot.Axes.Bottom.SetTicks(
            [.. Enumerable.Range(0, rows.Count).Select(i => (i * 3) + 0.5)],
            [.. rows.Select(r => $"{r.Guest.Replace(" pages/s", "\npages/s", StringComparison.Ordinal)}\n{r.DirtyLogMode}{(r.Transport == "plain" ? "" : $"\n{r.Transport}")}")]);
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        plot.Axes.Left.Label.Text = axis;
        if (logarithmic)
        {
            double top = Math.Ceiling(bars.Max(b => b.Value));
            double[] ticks = [.. Enumerable.Range(0, (int)top + 1).Select(k => (double)k)];
            plot.Axes.Left.SetTicks(ticks, [.. ticks.Select(t => Math.Pow(10, t + Floor).ToString("0.#", CultureInfo.InvariantCulture))]);
            plot.Axes.SetLimitsY(0, top + 0.3);
        }
        else
        {
            plot.Axes.Margins(bottom: 0, top: 0.15);
        }

        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "QEMU 7.2", FillColor = Qemu });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "DirtyLog", FillColor = DirtyLog });
        plot.ShowLegend(Alignment.UpperLeft);
        return plot;

        Bar Column(double position, double v, Color color) => new()
        {
            Position = position,
            Value = logarithmic ? Math.Log10(Math.Max(v, 0.1)) - Floor : v, // on a log panel, decades above 0.1 ms
            ValueBase = 0,
            FillColor = color,
            Label = v.ToString(format, CultureInfo.InvariantCulture),
        };
    }
}
