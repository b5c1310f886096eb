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

        ExampleProject.Build(code, "the README's example (it does not compile)");
    }

    [GeneratedRegex(@"<!-- compiled: adoption -->\s*```csharp\n(?<code>.*?)\n```", RegexOptions.Singleline)]
    private static partial Regex CompiledBlock();
}
