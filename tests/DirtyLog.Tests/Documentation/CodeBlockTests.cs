// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Documentation;

/// <summary>
/// Every C# block a reader meets is proved: a <c>compiled</c> block is cut out of its page and built as a VMM author
/// would build it (a project of its own, warnings as errors, the two product assemblies and nothing else); a
/// <c>snippet</c> block is the same lines, line for line, as a region of a test that runs them and checks what they did.
/// A block with neither marker, a snippet no test holds, or a test region no page shows fails here.
/// </summary>
[TestFixture]
[Category("Build")]
public class CodeBlockTests
{
    private static IEnumerable<TestCaseData> Compiled() =>
        DocumentationPages.All().SelectMany(DocumentationPages.CSharpBlocks).Where(b => b.Kind == "compiled")
            .Select(b => new TestCaseData(b).SetArgDisplayNames(b.Page, b.Name!));

    private static IEnumerable<TestCaseData> Snippets() =>
        DocumentationPages.All().SelectMany(DocumentationPages.CSharpBlocks).Where(b => b.Kind == "snippet")
            .Select(b => new TestCaseData(b).SetArgDisplayNames(b.Page, b.Name!));

    [Test]
    public void EveryCSharpBlockOfEveryPageIsCompiledOrRunByATest()
    {
        var unproved = new List<string>();
        foreach (string page in DocumentationPages.All())
        {
            CodeBlock[] blocks = [.. DocumentationPages.CSharpBlocks(page)];
            unproved.AddRange(blocks.Where(b => b.Kind is null).Select(b => b.ToString()));

            // A fence the block parser did not see (indented, or written otherwise) would escape every check.
            int fences = File.ReadAllText(Path.Combine(Repository.Root, page)).Split("```csharp").Length - 1;
            Assert.That(blocks, Has.Length.EqualTo(fences), $"{page}: every ```csharp fence starts a line and is closed");
        }

        Assert.That(unproved, Is.Empty, "blocks without <!-- compiled: NAME --> or <!-- snippet: NAME --> just before them");
    }

    [Test]
    public void NamesAreUniqueAndEveryTestSnippetIsShownSomewhere()
    {
        CodeBlock[] marked = [.. DocumentationPages.All().SelectMany(DocumentationPages.CSharpBlocks).Where(b => b.Name is not null)];
        string[] repeated = [.. marked.GroupBy(b => b.Name).Where(g => g.Count() > 1).Select(g => string.Join(", ", g))];
        Assert.That(repeated, Is.Empty, "a name marks one block");

        var shown = marked.Where(b => b.Kind == "snippet").Select(b => b.Name!).ToHashSet();
        string[] orphans = [.. DocumentationPages.TestSnippets().Where(s => !shown.Contains(s.Key)).Select(s => $"{s.Key} ({s.Value.File})")];
        Assert.That(orphans, Is.Empty, "test regions marked as snippets that no page shows any more");
    }

    [Test]
    public void TheDocumentationShowsCompiledAndRunExamples()
    {
        CodeBlock[] blocks = [.. DocumentationPages.All().SelectMany(DocumentationPages.CSharpBlocks)];
        Assert.That(blocks.Select(b => b.Name), Is.SupersetOf(new[] { "adoption", "migration-guide", "wiring", "bitmap" }));
    }

    [TestCaseSource(nameof(Compiled))]
    public void TheCompiledBlockBuildsFromTheProductAssembliesAlone(CodeBlock block) =>
        ExampleProject.Build(block.Code, $"the block \"{block.Name}\" of {block.Page} at line {block.Line} (it does not compile)");

    [TestCaseSource(nameof(Snippets))]
    public void TheSnippetIsRunByATestLineForLine(CodeBlock block)
    {
        IReadOnlyDictionary<string, (string File, string Code)> snippets = DocumentationPages.TestSnippets();
        Assert.That(snippets.ContainsKey(block.Name!), Is.True, $"a test holds \"// snippet: {block.Name}\" ... \"// end of snippet\"");
        (string file, string code) = snippets[block.Name!];
        IReadOnlyList<string> shown = DocumentationPages.Normalized(block.Code);
        IReadOnlyList<string> run = DocumentationPages.Normalized(code);
        int first = Enumerable.Range(0, Math.Min(shown.Count, run.Count)).FirstOrDefault(i => shown[i] != run[i], Math.Min(shown.Count, run.Count));
        Assert.That(shown, Is.EqualTo(run),
            $"{block} differs from {file} at its line {first + 1}: page \"{(first < shown.Count ? shown[first] : "(end)")}\", test \"{(first < run.Count ? run[first] : "(end)")}\"");
    }
}
