// Licensed under the MIT License. See LICENSE in the repository root.

using System.IO;
using NUnit.Framework;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>The checkout the tests run from.</summary>
internal static class Repository
{
    /// <summary>The repository root (where DirtyLog.sln is), above the test directory; <see langword="null"/> when the tests run elsewhere.</summary>
    public static string? TryFindRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "DirtyLog.sln")))
            {
                return dir.FullName;
            }
        }

        return null;
    }

    /// <summary>The repository root; the test fails when it is not above the test directory.</summary>
    public static string Root => TryFindRoot() ?? throw new AssertionException("The repository root (DirtyLog.sln) is not above the test directory.");
}
