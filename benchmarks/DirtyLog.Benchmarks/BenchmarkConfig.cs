// Licensed under the MIT License. See LICENSE in the repository root.

using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;

namespace DirtyLog.Benchmarks;

/// <summary>
/// The configuration of every benchmark: the default job (or the one given on the command line),
/// medians shown next to means, and the ratio of medians to the baseline of the same run (in a column and
/// drawn as a chart), because
/// these machines are shared and noisy and a median ratio is what the performance guide quotes.
/// </summary>
internal sealed class BenchmarkConfig : ManualConfig
{
    public BenchmarkConfig()
    {
        Add(DefaultConfig.Instance);
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumn(StatisticColumn.Median, new MedianRatioColumn());
        AddExporter(Charts.RatioChartExporter.Default);
        WithOrderer(new BenchmarkDotNet.Order.DefaultOrderer(BenchmarkDotNet.Order.SummaryOrderPolicy.Declared));
    }
}
