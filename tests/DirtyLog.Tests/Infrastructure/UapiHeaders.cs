// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.IO;
using NUnit.Framework;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>
/// Finds the kernel uapi headers that eng/fetch-uapi-headers.sh unpacks (or DIRTYLOG_UAPI_INCLUDE names) and gcc.
/// Outside CI a missing piece makes the test inconclusive; in CI (CI=true) it fails, because CI must run the check.
/// </summary>
internal static class UapiHeaders
{
    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public static string RequireIncludeDirectory()
    {
        string? dir = Environment.GetEnvironmentVariable("DIRTYLOG_UAPI_INCLUDE");
        if (string.IsNullOrEmpty(dir))
        {
            string? root = Repository.TryFindRoot();
            dir = root is null ? null : Path.Combine(root, ".uapi", "usr", "include");
        }

        bool present = dir is not null && File.Exists(Path.Combine(dir, "linux", "iommufd.h"));
        Require(present, $"kernel uapi headers with iommufd dirty tracking not found at {dir ?? "(no repository root)"}: run eng/fetch-uapi-headers.sh");
        return dir!;
    }

    public static void RequireGcc() => Require(Run("gcc", "--version", out _) == 0, "gcc is not installed");

    public static void Require(bool condition, string what)
    {
        if (!condition && InCi)
        {
            Assert.Fail($"CI must run this check, but {what}.");
        }

        Assume.That(condition, what);
    }

    public static int Run(string file, string arguments, out string output)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(file, arguments)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
            string stdout = process.StandardOutput.ReadToEnd();
            string stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            output = stdout + stderr;
            return process.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            output = e.Message;
            return -1;
        }
    }
}
