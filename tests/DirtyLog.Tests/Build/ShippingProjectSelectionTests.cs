// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.IO;
using System.Threading.Tasks;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Build;

/// <summary>
/// What ships is decided by a project's place inside the repository, not by the folders above the checkout: a clone
/// under a folder named <c>src</c> must not turn the tests, benchmarks and samples into packages.
/// </summary>
[TestFixture]
[Category("Build")]
public class ShippingProjectSelectionTests
{
    private string _checkout = null!;

    [SetUp]
    public void CopyTheBuildSettingsUnderAFolderNamedSrc()
    {
        string root = Repository.Root;
        _checkout = Path.Combine(Path.GetTempPath(), $"dirtylog-{Guid.NewGuid():N}", "src", "checkout");
        Directory.CreateDirectory(_checkout);
        foreach (string file in new[] { "Directory.Build.props", "Directory.Packages.props", "global.json" })
        {
            File.Copy(Path.Combine(root, file), Path.Combine(_checkout, file));
        }
    }

    [TearDown]
    public void DeleteTheCopy() => Directory.Delete(Path.GetDirectoryName(Path.GetDirectoryName(_checkout)!)!, recursive: true);

    [TestCase("src/Probe", "true")]
    [TestCase("tests/Probe", "false")]
    [TestCase("benchmarks/Probe", "false")]
    [TestCase("samples/Probe", "false")]
    public void OnlyProjectsUnderTheRepositorysOwnSrcFolderShip(string folder, string expected)
    {
        string project = Path.Combine(_checkout, folder, "Probe.csproj");
        Directory.CreateDirectory(Path.GetDirectoryName(project)!);
        File.WriteAllText(project, "<Project Sdk=\"Microsoft.NET.Sdk\" />");

        Assert.That(Evaluate(project, "IsPackable"), Is.EqualTo(expected));
    }

    private static string Evaluate(string project, string property) =>
        DotnetCli.Run("msbuild", Path.GetDirectoryName(project)!, "msbuild", project, $"-getProperty:{property}").Trim();
}
