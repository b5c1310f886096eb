// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Linq;
using System.Reflection;
using DirtyLog.Native;
using DirtyLog.Native.Linux;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Native;

/// <summary>
/// Every bound struct and constant of DirtyLog.Native, checked by gcc against the kernel's own uapi headers
/// (Debian trixie's linux-libc-dev 6.12, fetched by eng/fetch-uapi-headers.sh): a wrong field offset, field
/// size, struct size or ioctl number is a compile error.
/// </summary>
[TestFixture]
[Category("Unit")]
[Category("UapiHeaders")]
public class UapiHeaderCheckTests
{
    private static readonly Assembly s_native = typeof(IommufdContext).Assembly;

    private static (Type Type, string Header)[] BoundStructs() => s_native.GetTypes()
        .Select(t => (t, t.GetCustomAttribute<UapiStructAttribute>()?.Header))
        .Where(x => x.Header is not null)
        .Select(x => (x.t, x.Header!))
        .ToArray();

    private static (Type Type, string Header)[] BoundConstants() => s_native.GetTypes()
        .Select(t => (t, t.GetCustomAttribute<UapiConstantsAttribute>()?.Header))
        .Where(x => x.Header is not null)
        .Select(x => (x.t, x.Header!))
        .ToArray();

    [Test]
    public void EveryBoundStructAndConstantMatchesTheKernelHeaders()
    {
        string include = UapiHeaders.RequireIncludeDirectory();
        UapiHeaders.RequireGcc();
        var structs = BoundStructs();
        var constants = BoundConstants();
        Assert.That(structs, Has.Length.GreaterThanOrEqualTo(16), "iommufd and VFIO structs are all marked");

        string source = UapiCheckGenerator.Generate(structs, constants);
        (int exit, string output) = Compile(source, include);
        int checks = source.Split('\n').Count(l => l.StartsWith("CHECK(", StringComparison.Ordinal));
        TestContext.Out.WriteLine($"{structs.Length} structs, {constants.Sum(c => c.Type.GetFields(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic).Count(f => f.IsLiteral))} constants, {checks} static assertions");
        Assert.That(exit, Is.Zero, $"gcc rejected the bindings:\n{output}");
    }

    [Test]
    public void AWrongBindingIsACompileError()
    {
        string include = UapiHeaders.RequireIncludeDirectory();
        UapiHeaders.RequireGcc();
        string source = UapiCheckGenerator.Generate([(typeof(iommu_hwpt_get_dirty_bitmap), "linux/iommufd.h")], []);
        (int exit, string output) = Compile(source, include);
        Assert.Multiple(() =>
        {
            Assert.That(exit, Is.Not.Zero, "a struct with a field too narrow must not compile");
            Assert.That(output, Does.Contain("offsetof(iommu_hwpt_get_dirty_bitmap.iova)"));
        });
    }

    private static (int Exit, string Output) Compile(string source, string include)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"dirtylog-uapi-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string file = Path.Combine(dir, "uapi_check.c");
            File.WriteAllText(file, source);
            UapiHeaders.Run("gcc", "-dumpmachine", out string triplet);
            string arch = Path.Combine(include, triplet.Trim());
            int exit = UapiHeaders.Run("gcc", $"-std=c11 -fsyntax-only -Werror -I \"{include}\" -I \"{arch}\" \"{file}\"", out string output);
            return (exit, output);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A deliberately wrong mirror: <c>hwpt_id</c> widened to 64 bits shifts every field after it.</summary>
    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct iommu_hwpt_get_dirty_bitmap
    {
        public uint size;
        public ulong hwpt_id;
        public uint flags;
        public uint __reserved;
        public ulong iova;
        public ulong length;
        public ulong page_size;
        public ulong data;
    }
}
