// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using NUnit.Framework;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>
/// Builds a documentation example as a VMM author would: one file in a project of its own, warnings as errors, that
/// references the two product assemblies and nothing else (no DirtyLog.Testing, no test code).
/// </summary>
internal static class ExampleProject
{
    /// <summary>Builds <paramref name="code"/>; a build that fails fails the test with <paramref name="what"/> and the compiler's output.</summary>
    public static void Build(string code, string what)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"dirtylog-example-{Guid.NewGuid():N}");
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

            DotnetCli.Run(what, dir, "build", "Example.csproj", "-v:q", "-nologo");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
