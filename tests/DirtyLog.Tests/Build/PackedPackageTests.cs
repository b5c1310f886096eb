// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Reflection;
using System.Reflection.Metadata;
using System.Runtime.Versioning;
using System.Threading.Tasks;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Build;

/// <summary>
/// The packages as a user gets them, packed from this build: each carries its own short readme, a symbol package
/// whose PDB names no path of the build machine and embeds every source file, and the platform attribute on every
/// type that calls the kernel.
/// </summary>
[TestFixture]
[Category("Build")]
[NonParallelizable]
public class PackedPackageTests
{
    private static readonly string[] Packages = ["DirtyLog", "DirtyLog.Native", "DirtyLog.Testing"];
    private static readonly Guid EmbeddedSource = new("0E8A571B-6926-466E-B4AD-8AB04611F5FE");
    private string _output = "";

#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    [OneTimeSetUp]
    public void Pack()
    {
        _output = Directory.CreateTempSubdirectory("dirtylog-packages-").FullName;
        foreach (string package in Packages)
        {
            string project = Path.Combine(Repository.Root, "src", package, package + ".csproj");
            DotnetCli.Run($"dotnet pack {package}", Repository.Root, "pack", project, "-c", Configuration, "--no-build", "-o", _output);
        }
    }

    [OneTimeTearDown]
    public void Delete() => Directory.Delete(_output, recursive: true);

    [TestCaseSource(nameof(Packages))]
    public void EachPackageCarriesItsOwnShortReadme(string package)
    {
        using ZipArchive nupkg = ZipFile.OpenRead(Path.Combine(_output, $"{package}.0.1.0-preview.nupkg"));
        ZipArchiveEntry? readme = nupkg.GetEntry("README.md");
        Assert.That(readme, Is.Not.Null, "README.md at the package root");
        using var reader = new StreamReader(readme!.Open());
        string text = reader.ReadToEnd();
        Assert.Multiple(() =>
        {
            Assert.That(text, Is.EqualTo(File.ReadAllText(Path.Combine(Repository.Root, "src", package, "PACKAGE.md"))), "the package's own readme");
            Assert.That(text, Does.StartWith($"# {package}\n"));
            Assert.That(text, Does.Contain($"dotnet add package {package}"));
            Assert.That(text, Does.Not.Contain("CI").And.Not.Contain("BenchmarkDotNet"), "not the repository's README");
        });
    }

    [TestCaseSource(nameof(Packages))]
    public void TheSymbolsNameNoBuildMachinePathAndEmbedEverySource(string package)
    {
        using ZipArchive snupkg = ZipFile.OpenRead(Path.Combine(_output, $"{package}.0.1.0-preview.snupkg"));
        ZipArchiveEntry pdb = snupkg.GetEntry($"lib/net10.0/{package}.pdb") ?? throw new AssertionException("no PDB in the symbol package");
        using var stream = new MemoryStream();
        using (Stream entry = pdb.Open())
        {
            entry.CopyTo(stream);
        }

        stream.Position = 0;
        using MetadataReaderProvider provider = MetadataReaderProvider.FromPortablePdbStream(stream);
        MetadataReader metadata = provider.GetMetadataReader();
        string[] documents = [.. metadata.Documents.Select(d => metadata.GetString(metadata.GetDocument(d).Name))];
        int embedded = metadata.CustomDebugInformation
            .Select(metadata.GetCustomDebugInformation)
            .Count(c => c.Parent.Kind == HandleKind.Document && metadata.GetGuid(c.Kind) == EmbeddedSource);
        Assert.Multiple(() =>
        {
            Assert.That(documents, Is.Not.Empty);
            Assert.That(documents.Where(d => !d.StartsWith("/_/", StringComparison.Ordinal)), Is.Empty, "every path mapped to /_/");
            Assert.That(documents.Where(d => d.Contains(Repository.Root, StringComparison.Ordinal)), Is.Empty, "no path of this machine");
            Assert.That(embedded, Is.EqualTo(documents.Length), "every source embedded");
        });
    }

    [TestCase(typeof(DirtyLog.Native.KvmVm))]
    [TestCase(typeof(DirtyLog.Native.KvmDirtyRing))]
    [TestCase(typeof(DirtyLog.Native.IommufdContext))]
    [TestCase(typeof(DirtyLog.Native.VfioDevice))]
    [TestCase(typeof(DirtyLog.Native.UserfaultfdContext))]
    [TestCase(typeof(DirtyLog.Native.FileDescriptorHandle))]
    [TestCase(typeof(DirtyLog.Native.AnonymousMapping))]
    [TestCase(typeof(DirtyLog.Tracking.Ports.KvmVmPort))]
    [TestCase(typeof(DirtyLog.Tracking.Ports.IommufdDirtyPort))]
    [TestCase(typeof(DirtyLog.Tracking.Ports.VfioDmaLoggingPort))]
    [TestCase(typeof(DirtyLog.Tracking.Ports.UserfaultfdWriteProtectPort))]
    [TestCase(typeof(DirtyLog.Mapping.IommufdIoMapBackend))]
    [TestCase(typeof(DirtyLog.Testing.EmulatedIommu))]
    public void ATypeThatCallsTheKernelSaysItIsLinuxOnly(Type type)
    {
        bool linux = type.GetCustomAttributes<SupportedOSPlatformAttribute>(inherit: false).Any(a => a.PlatformName == "linux")
            || type.Assembly.GetCustomAttributes<SupportedOSPlatformAttribute>().Any(a => a.PlatformName == "linux");
        Assert.That(linux, Is.True, $"{type.FullName}: [SupportedOSPlatform(\"linux\")], so CA1416 warns a consumer on another OS");
    }
}
