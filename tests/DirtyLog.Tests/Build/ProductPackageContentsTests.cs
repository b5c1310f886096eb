// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Linq;
using System.Reflection;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Build;

/// <summary>
/// The product packages (DirtyLog, DirtyLog.Native) carry no test scaffolding: no emulator, no tiny guest, no test
/// hook, and nothing of a VMM (creating VMs or vCPUs, running them, their registers), neither in their public API
/// baselines nor among their types; DirtyLog.Testing carries them.
/// </summary>
[TestFixture]
[Category("Build")]
public class ProductPackageContentsTests
{
    private static readonly string[] ScaffoldingWords = ["Emulat", "TinyGuest", "TestHook", "Lossy", "DropsOneWord", "DirtyLog.Testing", "KvmVcpu", "KvmSystem", "CreateVcpu", "CreateVm", "Registers"];

    [TestCase("src/DirtyLog")]
    [TestCase("src/DirtyLog.Native")]
    public void AProductPackagesPublicApiNamesNoScaffolding(string project)
    {
        string root = Repository.Root;
        string[] lines = Directory.GetFiles(Path.Combine(root, project), "PublicAPI.*.txt").SelectMany(File.ReadAllLines).ToArray();
        Assert.That(lines, Is.Not.Empty);
        Assert.That(lines.Where(l => ScaffoldingWords.Any(w => l.Contains(w, StringComparison.Ordinal))), Is.Empty);
    }

    [Test]
    public void NoTypeOfAProductAssemblyIsScaffoldingEvenAnInternalOne()
    {
        Type[] types = [.. typeof(SparseDirtyBitmap).Assembly.GetTypes(), .. typeof(KvmVm).Assembly.GetTypes()];
        Assert.That(types.Select(t => t.FullName!).Where(n => ScaffoldingWords.Any(w => n.Contains(w, StringComparison.Ordinal))), Is.Empty);
        Assert.That(
            typeof(SparseDirtyBitmap).Assembly.GetReferencedAssemblies().Concat(typeof(KvmVm).Assembly.GetReferencedAssemblies()).Select(a => a.Name),
            Has.None.EqualTo(typeof(EmulatedIommu).Assembly.GetName().Name),
            "a product assembly references the testing one");
    }

    [Test]
    public void TheTestingPackageHoldsTheEmulatorsAndTheTinyGuest()
    {
        Assembly testing = typeof(EmulatedIommu).Assembly;
        Assert.That(testing.GetName().Name, Is.EqualTo("DirtyLog.Testing"));
        Assert.That(new[] { typeof(EmulatedTracker), typeof(EmulatedDmaDevice), typeof(EmulatedGuestMemory), typeof(TinyGuest) }.Select(t => t.Assembly), Is.All.EqualTo(testing));
    }
}
