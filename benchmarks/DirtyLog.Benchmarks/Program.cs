// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using System.Reflection;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace DirtyLog.Benchmarks;

/// <summary>
/// Entry point: <c>dotnet run -c Release --project benchmarks/DirtyLog.Benchmarks -- --filter '*'</c>; or
/// <c>-- chart-qemu-comparison IN.json OUT.png</c>, which <c>benchmarks/qemu/compare.py</c> calls to draw its chart.
/// </summary>
internal static class Program
{
    /// <returns>0 when every selected benchmark ran; 1 when one failed to build or run, or none was selected.</returns>
    private static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == Charts.QemuComparisonChart.Command)
        {
            return Charts.QemuComparisonChart.Run(args[1..]); // compare.py's chart, drawn with the same tools as the benchmarks' own
        }

        Type[] types = typeof(Program).Assembly.GetTypes().Where(t => t.IsPublic && !t.IsAbstract && t.IsClass).ToArray();
        if (!DirtyLog.Testing.KvmSystem.IsAvailable)
        {
            Console.WriteLine($"{DirtyLog.Testing.KvmSystem.DevicePath} is missing: the KVM benchmarks are left out.");
            types = types.Where(t => t.GetCustomAttribute<BenchmarkCategoryAttribute>()?.Categories.Contains(Infrastructure.Categories.Kvm) != true).ToArray();
        }

        // Where benchmarks that measure more than time (the migrations') leave their figures for the host's columns.
        string measurements = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"dirtylog-measurements-{Environment.ProcessId}.tsv");
        Environment.SetEnvironmentVariable(Migration.PostCopy.PostCopyBenchmarkColumns.FileVariable, measurements);
        Summary[] summaries;
        try
        {
            summaries = [.. BenchmarkSwitcher.FromTypes(types).Run(args, new BenchmarkConfig())];
        }
        finally
        {
            System.IO.File.Delete(measurements);
        }

        if (args.Contains("--list") || args.Contains("--help") || args.Contains("--info"))
        {
            return 0;
        }

        bool failed = summaries.Length == 0
            || summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Length == 0 || s.Reports.Any(r => !r.Success));
        return failed ? 1 : 0;
    }
}
