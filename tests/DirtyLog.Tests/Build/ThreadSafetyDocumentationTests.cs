// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Xml.Linq;
using NUnit.Framework;

namespace DirtyLog.Tests.Build;

/// <summary>Every public type of every package says in its XML documentation how it may be used from threads.</summary>
[TestFixture]
[Category("Build")]
public class ThreadSafetyDocumentationTests
{
    [TestCase(typeof(DirtyLog.Native.KvmVm))]
    [TestCase(typeof(DirtyLog.Bitmaps.SparseDirtyBitmap))]
    [TestCase(typeof(DirtyLog.Testing.EmulatedIommu))]
    public void EveryPublicTypeStatesItsThreadSafety(Type anyTypeOfThePackage)
    {
        Assembly assembly = anyTypeOfThePackage.Assembly;
        string xml = Path.ChangeExtension(assembly.Location, ".xml");
        Assert.That(File.Exists(xml), Is.True, $"{xml}: the package's XML documentation");
        XDocument docs = XDocument.Load(xml);
        string[] silent = [.. assembly.GetExportedTypes()
            .Where(t => !t.IsEnum && !typeof(Delegate).IsAssignableFrom(t))
            .Where(t =>
            {
                string id = "T:" + t.FullName!.Replace('+', '.');
                XElement? member = docs.Descendants("member").FirstOrDefault(m => (string?)m.Attribute("name") == id);
                string text = member?.Value ?? "";
                return !(text.Contains("thread", StringComparison.OrdinalIgnoreCase) || text.Contains("immutable", StringComparison.OrdinalIgnoreCase));
            })
            .Select(t => t.FullName!)
            .Order()];
        Assert.That(silent, Is.Empty, "public types whose documentation says nothing of threads");
    }
}
