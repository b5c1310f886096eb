// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.Threading.Tasks;
using NUnit.Framework;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>
/// Runs the <c>dotnet</c> CLI from a test: no build server or MSBuild node left behind holding the output pipes open,
/// both outputs drained, a hang or a failure asserted with what it printed.
/// </summary>
internal static class DotnetCli
{
    /// <summary>Runs <c>dotnet</c> with <paramref name="arguments"/> and returns its standard output; any exit code but 0 fails the test.</summary>
    public static string Run(string what, string workingDirectory, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet", [.. arguments, "-nodeReuse:false"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory,
        };
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using Process process = Process.Start(start)!;
        Task<string> output = process.StandardOutput.ReadToEndAsync(), error = process.StandardError.ReadToEndAsync();
        Assert.That(process.WaitForExit(TimeSpan.FromMinutes(3)), Is.True, $"{what} hung");
        Assert.That(Task.WaitAll([output, error], TimeSpan.FromMinutes(1)), Is.True, $"{what}: the output never ended");
        Assert.That(process.ExitCode, Is.Zero, $"{what} failed:\n{output.Result}{error.Result}");
        return output.Result;
    }
}
