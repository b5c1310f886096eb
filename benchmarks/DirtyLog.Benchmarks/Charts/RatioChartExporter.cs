// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace DirtyLog.Benchmarks.Charts;

/// <summary>
/// Draws every run's cases against their baselines as a PNG beside BenchmarkDotNet's own reports
/// (<c>BenchmarkDotNet.Artifacts/results/NAME-ratios.png</c>): one bar per case that is not a baseline, its median
/// over the median of its group's baseline. A summary without baselines draws nothing. Run several benchmark
/// classes with <c>--join</c> to have them in one chart.
/// </summary>
internal sealed class RatioChartExporter : IExporter
{
    public static readonly RatioChartExporter Default = new();

    public string Name => "ratio-chart";

    public void ExportToLog(Summary summary, ILogger logger)
    {
        // A picture has no text form; the Ratio(median) column carries the same figures in the log.
    }

    public IEnumerable<string> ExportToFiles(Summary summary, ILogger consoleLogger)
    {
        List<(string Label, double Ratio)> ratios = [];
        HashSet<string> baselines = [];
        // Grouped by class (a joined run interleaves them), each class's cases in the order the run took them.
        foreach (BenchmarkCase benchmark in summary.BenchmarksCases.Select((b, i) => (b, i)).OrderBy(x => x.b.Descriptor.Type.Name, StringComparer.Ordinal).ThenBy(x => x.i).Select(x => x.b))
        {
            if (summary.IsBaseline(benchmark))
            {
                continue;
            }

            BenchmarkCase? baseline = summary.GetBaseline(summary.GetLogicalGroupKey(benchmark));
            double? mine = summary[benchmark]?.ResultStatistics?.Median;
            double? theirs = baseline is null ? null : summary[baseline]?.ResultStatistics?.Median;
            if (baseline is null || mine is null || theirs is null or 0)
            {
                continue;
            }

            baselines.Add(baseline.Descriptor.WorkloadMethod.Name);
            string parameters = benchmark.HasParameters ? $" ({string.Join(", ", benchmark.Parameters.Items.Select(p => $"{p.Name}={p.Value}"))})" : "";
            ratios.Add(($"{benchmark.Descriptor.Type.Name}.{benchmark.Descriptor.WorkloadMethod.Name}{parameters}", mine.Value / theirs.Value));
        }

        if (ratios.Count == 0)
        {
            return [];
        }

        string path = Path.Combine(summary.ResultsDirectoryPath, $"{summary.Title}-ratios.png");
        string baselineName = baselines.Count == 1 ? baselines.Single() : "each group's baseline";
        RatioChart.Write(path, $"DirtyLog benchmarks: median ratio to the baseline ({summary.HostEnvironmentInfo.Cpu.Value?.ProcessorName ?? "this machine"})", baselineName, ratios);
        consoleLogger.WriteLineInfo($"ratio chart: {path}");
        return [path];
    }
}
