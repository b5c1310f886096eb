// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Build;

/// <summary>
/// Every block of the articles marked <c>&lt;!-- compiled: NAME --&gt;</c> compiles as shown: cut out of the article
/// and built, with warnings as errors, in a project of its own that references the two product assemblies alone.
/// </summary>
[TestFixture]
[Category("Build")]
public partial class ArticleExampleTests
{
    private static IEnumerable<TestCaseData> Blocks() =>
        Directory.EnumerateFiles(Path.Combine(Repository.Root, "docs", "articles"), "*.md")
            .SelectMany(path => CompiledBlock().Matches(File.ReadAllText(path)).Select(m => new TestCaseData(Path.GetFileName(path), m.Groups["name"].Value, m.Groups["code"].Value)
                .SetArgDisplayNames(Path.GetFileName(path), m.Groups["name"].Value)));

    [Test]
    public void TheMigrationGuideHasACompiledExample() =>
        Assert.That(Blocks().Select(b => (string)b.Arguments[1]!), Does.Contain("migration-guide"));

    [TestCaseSource(nameof(Blocks))]
    public void TheBlockCompilesFromTheProductAssembliesAlone(string article, string name, string code)
    {
        ExampleProject.Build(code, $"the block \"{name}\" of {article} (it does not compile)");
    }

    [GeneratedRegex(@"<!-- compiled: (?<name>[a-z0-9-]+) -->\s*```csharp\n(?<code>.*?)\n```", RegexOptions.Singleline)]
    private static partial Regex CompiledBlock();
}
