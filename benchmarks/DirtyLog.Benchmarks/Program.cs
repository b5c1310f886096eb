// Licensed under the MIT License. See LICENSE in the repository root.

using BenchmarkDotNet.Running;

namespace DirtyLog.Benchmarks;

/// <summary>Entry point: <c>dotnet run -c Release --project benchmarks/DirtyLog.Benchmarks -- --filter '*'</c>.</summary>
internal static class Program
{
    private static void Main(string[] args) =>
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, new BenchmarkConfig());
}
