// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using DirtyLog.Tests.Infrastructure;

namespace DirtyLog.Tests.Documentation;

/// <summary>
/// The pages a reader meets (the README and every article under <c>docs/articles</c>) and their fenced C# blocks, each
/// with the marker that says how a test proves it: <c>&lt;!-- compiled: NAME --&gt;</c> (a whole file, built on its own
/// against the product assemblies) or <c>&lt;!-- snippet: NAME --&gt;</c> (lines a test runs, found line for line in a
/// test's source between <c>// snippet: NAME</c> and <c>// end of snippet</c>).
/// </summary>
internal static partial class DocumentationPages
{
    /// <summary>The README and the articles, as paths relative to the repository root.</summary>
    public static IReadOnlyList<string> All() =>
        [
            "README.md",
            .. Directory.EnumerateFiles(ArticlesDirectory, "*.md").Order(StringComparer.Ordinal).Select(p => Path.GetRelativePath(Repository.Root, p)),
        ];

    /// <summary>The articles' directory.</summary>
    public static string ArticlesDirectory => Path.Combine(Repository.Root, "docs", "articles");

    /// <summary>Every fenced C# block of <paramref name="page"/>, in order.</summary>
    public static IEnumerable<CodeBlock> CSharpBlocks(string page)
    {
        string text = File.ReadAllText(Path.Combine(Repository.Root, page)).ReplaceLineEndings("\n");
        foreach (Match m in FencedCSharp().Matches(text))
        {
            int line = text.AsSpan(0, m.Index).Count('\n') + 1;
            Match marker = Marker().Match(m.Groups["before"].Value);
            yield return new CodeBlock(
                page,
                line,
                marker.Success ? marker.Groups["kind"].Value : null,
                marker.Success ? marker.Groups["name"].Value : null,
                m.Groups["code"].Value);
        }
    }

    private static readonly Lazy<IReadOnlyDictionary<string, (string File, string Code)>> Snippets = new(() => ReadTestSnippets());

    /// <summary>Every snippet region in the tests' sources: its name, its lines and the file it is in (read once per run).</summary>
    public static IReadOnlyDictionary<string, (string File, string Code)> TestSnippets() => Snippets.Value;

    private static Dictionary<string, (string File, string Code)> ReadTestSnippets()
    {
        var snippets = new Dictionary<string, (string File, string Code)>(StringComparer.Ordinal);
        foreach (string file in Directory.EnumerateFiles(Path.Combine(Repository.Root, "tests"), "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                || file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            {
                continue;
            }

            string text = File.ReadAllText(file).ReplaceLineEndings("\n");
            foreach (Match m in SnippetRegion().Matches(text))
            {
                string name = m.Groups["name"].Value;
                if (!snippets.TryAdd(name, (Path.GetRelativePath(Repository.Root, file), m.Groups["code"].Value)))
                {
                    throw new InvalidOperationException($"the snippet \"{name}\" is in the tests twice ({snippets[name].File} and {file})");
                }
            }
        }

        return snippets;
    }

    /// <summary>
    /// <paramref name="code"/> as lines without their common indentation and trailing spaces, so that a block indented
    /// inside a test method compares equal to the same block at the margin of a page.
    /// </summary>
    public static IReadOnlyList<string> Normalized(string code)
    {
        string[] lines = code.ReplaceLineEndings("\n").Split('\n').Select(l => l.TrimEnd()).ToArray();
        int indent = lines.Where(l => l.Length > 0).Select(l => l.Length - l.TrimStart().Length).DefaultIfEmpty(0).Min();
        return lines.Select(l => l.Length == 0 ? l : l[indent..]).ToArray();
    }

    // The marker may sit on the line just before the fence (blank lines between are allowed).
    [GeneratedRegex(@"(?<before>[^\n]*\n(?:[ \t]*\n)*)```csharp\n(?<code>.*?)\n```", RegexOptions.Singleline)]
    private static partial Regex FencedCSharp();

    [GeneratedRegex(@"^<!-- (?<kind>compiled|snippet): (?<name>[a-z0-9-]+) -->\s*$", RegexOptions.Multiline)]
    private static partial Regex Marker();

    [GeneratedRegex(@"^[ \t]*// snippet: (?<name>[a-z0-9-]+)[ \t]*\n(?<code>.*?)\n[ \t]*// end of snippet[ \t]*$", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex SnippetRegion();
}
