// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.IO;
using System.Text.RegularExpressions;
using System.Threading.Tasks;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Build;

/// <summary>
/// The README's adoption example compiles as shown: the code block is cut out of the README itself and built, with
/// warnings as errors, in a project of its own that references the two product assemblies and nothing else (no
/// DirtyLog.Testing, no test code).
/// </summary>
[TestFixture]
[Category("Build")]
public partial class ReadmeAdoptionExampleTests
{
    [Test]
    public void TheAdoptionExampleCompilesFromTheProductAssembliesAlone()
    {
        string readme = File.ReadAllText(Path.Combine(Repository.Root, "README.md"));
        Match block = CompiledBlock().Match(readme);
        Assert.That(block.Success, Is.True, "the README has a block marked <!-- compiled: adoption -->");
        string code = block.Groups["code"].Value;
        Assert.That(code, Does.Contain("FileDescriptorHandle.Borrow").And.Contain("KvmVm.FromHandle").And.Contain("AddSlot"), "it shows the borrowed-descriptor path");

        string dir = Path.Combine(Path.GetTempPath(), $"dirtylog-readme-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string bin = TestContext.CurrentContext.TestDirectory;
            File.WriteAllText(Path.Combine(dir, "Example.cs"), code);
            File.WriteAllText(Path.Combine(dir, "Example.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>disable</ImplicitUsings>
                    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                  </PropertyGroup>
                  <ItemGroup>
                    <Reference Include="DirtyLog"><HintPath>{Path.Combine(bin, "DirtyLog.dll")}</HintPath></Reference>
                    <Reference Include="DirtyLog.Native"><HintPath>{Path.Combine(bin, "DirtyLog.Native.dll")}</HintPath></Reference>
                  </ItemGroup>
                </Project>
                """);

            var start = new ProcessStartInfo("dotnet", ["build", "Example.csproj", "-nodeReuse:false", "-v:q", "-nologo"])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = dir,
            };
            start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
            start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
            using Process process = Process.Start(start)!;
            Task<string> output = process.StandardOutput.ReadToEndAsync();
            Task<string> error = process.StandardError.ReadToEndAsync();
            Assert.That(process.WaitForExit(TimeSpan.FromMinutes(3)), Is.True, "the build hung");
            Assert.That(Task.WaitAll([output, error], TimeSpan.FromMinutes(1)), Is.True, "the build's output never ended");
            Assert.That(process.ExitCode, Is.Zero, $"the README's example does not compile:\n{output.Result}{error.Result}");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [GeneratedRegex(@"<!-- compiled: adoption -->\s*```csharp\n(?<code>.*?)\n```", RegexOptions.Singleline)]
    private static partial Regex CompiledBlock();
}
