// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace DirtyLog.Benchmarks.Migration.PostCopy;

/// <summary>
/// The columns of <see cref="PostCopyBenchmarks"/> beside its time: the medians of downtime, bytes sent, the guest's
/// pace and pre-copy's rounds over each case's migrations (its first, the warm-up, left out), and the downtime's
/// ratio to the baseline's. The benchmark's process writes each measurement to a file the host names
/// (<see cref="FileVariable"/>, inherited by the benchmark's process), and the columns read it back.
/// </summary>
internal sealed class PostCopyBenchmarkColumns : ManualConfig
{
    /// <summary>The environment variable naming the file of measurements, set by the host before it starts the benchmarks.</summary>
    public const string FileVariable = "DIRTYLOG_BENCHMARK_MEASUREMENTS";

    private static readonly object FileLock = new();

    public PostCopyBenchmarkColumns()
    {
        AddColumn(
            new MeasurementColumn("Downtime(median)", m => m.Downtime.TotalMilliseconds, "0.0 'ms'"),
            new MeasurementColumn("Downtime ratio", m => m.Downtime.TotalMilliseconds, "0.000", ratio: true),
            new MeasurementColumn("Sent(median)", m => m.BytesSent / 1048576.0, "0 'MiB'"),
            new MeasurementColumn("Guest pace(median)", m => m.Pace, "0.00"),
            new MeasurementColumn("Rounds(median)", m => m.Rounds, "0"),
            new MeasurementColumn("Pace before switch(median)", m => m.PaceBeforeSwitch, "0.00"),
            new MeasurementColumn("Pace after switch(median)", m => m.PaceAfterSwitch, "0.000"));
    }

    /// <summary>One migration's measurement, of the case named by its method: a line of the file.</summary>
    public static void Record(string method, MigrationMeasurement m)
    {
        if (Environment.GetEnvironmentVariable(FileVariable) is not { Length: > 0 } path)
        {
            return;
        }

        string line = string.Join('\t', method, m.Total.TotalMilliseconds.ToString("R", CultureInfo.InvariantCulture),
            m.Downtime.TotalMilliseconds.ToString("R", CultureInfo.InvariantCulture), m.BytesSent.ToString(CultureInfo.InvariantCulture),
            m.Pace.ToString("R", CultureInfo.InvariantCulture), m.Rounds.ToString(CultureInfo.InvariantCulture),
            m.PaceBeforeSwitch.ToString("R", CultureInfo.InvariantCulture), m.PaceAfterSwitch.ToString("R", CultureInfo.InvariantCulture),
            Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        lock (FileLock)
        {
            File.AppendAllText(path, line + "\n");
        }
    }

    /// <summary>The median over a case's migrations, each process's first (its warm-up) left out.</summary>
    private static double? Median(string method, Func<MigrationMeasurement, double> pick)
    {
        if (Environment.GetEnvironmentVariable(FileVariable) is not { Length: > 0 } path || !File.Exists(path))
        {
            return null;
        }

        double[] values = [.. File.ReadAllLines(path)
            .Select(line => line.Split('\t'))
            .Where(f => f.Length == 9 && f[0] == method)
            .GroupBy(f => f[8])
            .SelectMany(process => process.Skip(1))
            .Select(f => pick(new MigrationMeasurement(
                TimeSpan.FromMilliseconds(double.Parse(f[1], CultureInfo.InvariantCulture)),
                TimeSpan.FromMilliseconds(double.Parse(f[2], CultureInfo.InvariantCulture)),
                long.Parse(f[3], CultureInfo.InvariantCulture),
                double.Parse(f[4], CultureInfo.InvariantCulture),
                int.Parse(f[5], CultureInfo.InvariantCulture),
                double.Parse(f[6], CultureInfo.InvariantCulture),
                double.Parse(f[7], CultureInfo.InvariantCulture))))
            .Order()];
        return values.Length == 0 ? null : values.Length % 2 == 1 ? values[values.Length / 2] : (values[(values.Length / 2) - 1] + values[values.Length / 2]) / 2;
    }

    private sealed class MeasurementColumn(string name, Func<MigrationMeasurement, double> pick, string format, bool ratio = false) : IColumn
    {
        public string Id => $"{nameof(PostCopyBenchmarkColumns)}.{name}";

        public string ColumnName => name;

        public bool AlwaysShow => true;

        public ColumnCategory Category => ColumnCategory.Custom;

        public int PriorityInCategory => 0;

        public bool IsNumeric => true;

        public UnitType UnitType => UnitType.Dimensionless;

        public string Legend => ratio ? "Median downtime of this case / the baseline's, same run" : $"{name} over the case's migrations, each process's first (the warm-up) left out";

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            double? mine = Median(benchmarkCase.Descriptor.WorkloadMethod.Name, pick);
            if (!ratio)
            {
                return mine?.ToString(format, CultureInfo.InvariantCulture) ?? "?";
            }

            BenchmarkCase? baseline = summary.GetBaseline(summary.GetLogicalGroupKey(benchmarkCase));
            double? theirs = baseline is null ? null : Median(baseline.Descriptor.WorkloadMethod.Name, pick);
            return mine is null || theirs is null or 0 ? "?" : (mine.Value / theirs.Value).ToString(format, CultureInfo.InvariantCulture);
        }

        public bool IsAvailable(Summary summary) => true;

        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    }
}
