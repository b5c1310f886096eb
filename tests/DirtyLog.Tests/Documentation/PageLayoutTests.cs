// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Documentation;

/// <summary>
/// The shape of the documentation: a short README that leads into the guides, every guide in the site's table of
/// contents, and every link and picture of every page pointing at something that exists.
/// </summary>
[TestFixture]
[Category("Unit")]
public partial class PageLayoutTests
{
    private const int ReadmeLineLimit = 250;

    private static readonly byte[] PngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    private static IEnumerable<TestCaseData> Pages() =>
        DocumentationPages.All().Select(p => new TestCaseData(p).SetArgDisplayNames(p));

    [Test]
    public void TheReadmeIsShortAndLeadsIntoTheGuides()
    {
        string[] lines = File.ReadAllLines(Path.Combine(Repository.Root, "README.md"));
        Assert.That(lines, Has.Length.LessThanOrEqualTo(ReadmeLineLimit), "the README is a front page; reference material belongs in docs/articles");
        string text = string.Join('\n', lines);
        string[] articles = [.. Articles()];
        string[] unlinked = [.. articles.Where(a => !text.Contains($"docs/articles/{a}", StringComparison.Ordinal))];
        Assert.That(unlinked, Is.Empty, "the README links to every guide");
    }

    [Test]
    public void EveryArticleIsInTheTableOfContentsAndEveryEntryExists()
    {
        string toc = File.ReadAllText(Path.Combine(DocumentationPages.ArticlesDirectory, "toc.yml"));
        string[] entries = [.. TocEntry().Matches(toc).Select(m => m.Groups["href"].Value)];
        Assert.Multiple(() =>
        {
            Assert.That(entries, Is.EquivalentTo(Articles()), "docs/articles/toc.yml lists each article once");
            Assert.That(Articles().Count(), Is.GreaterThanOrEqualTo(7));
            Assert.That(Articles(), Is.SupersetOf(new[] { "getting-started.md", "performance.md", "snapshots.md", "bitmap.md", "architecture.md" }));
        });
    }

    [TestCaseSource(nameof(Pages))]
    public void EveryLinkAndPictureOfThePageExists(string page)
    {
        string path = Path.Combine(Repository.Root, page);
        string text = File.ReadAllText(path);
        string directory = Path.GetDirectoryName(path)!;
        var broken = new List<string>();
        foreach (Match link in MarkdownLink().Matches(StripCode(text)))
        {
            string target = link.Groups["target"].Value;
            if (target.Contains("://", StringComparison.Ordinal) || target.StartsWith("mailto:", StringComparison.Ordinal))
            {
                continue;
            }

            string[] parts = target.Split('#', 2);
            string file = parts[0].Length == 0 ? path : Path.GetFullPath(Path.Combine(directory, parts[0]));
            if (!File.Exists(file) && !Directory.Exists(file))
            {
                broken.Add($"{target}: no such file");
                continue;
            }

            if (parts.Length == 2 && file.EndsWith(".md", StringComparison.Ordinal) && !Anchors(File.ReadAllText(file)).Contains(parts[1]))
            {
                broken.Add($"{target}: no heading with that anchor");
            }
        }

        Assert.That(broken, Is.Empty, $"links of {page}");
    }

    [TestCaseSource(nameof(Pages))]
    public void EveryPictureIsAPngOrSvgFileOfItsOwn(string page)
    {
        string path = Path.Combine(Repository.Root, page);
        foreach (Match picture in Picture().Matches(StripCode(File.ReadAllText(path))))
        {
            string target = picture.Groups["target"].Value;
            string file = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path)!, target));
            Assert.That(File.Exists(file), Is.True, $"{page} shows {target}");
            byte[] bytes = File.ReadAllBytes(file);
            bool png = bytes.AsSpan().StartsWith(PngSignature);
            bool svg = target.EndsWith(".svg", StringComparison.Ordinal) && File.ReadAllText(file).Contains("<svg", StringComparison.Ordinal);
            Assert.That(png || svg, Is.True, $"{target} is a PNG or an SVG");
        }
    }

    private static IEnumerable<string> Articles() =>
        Directory.EnumerateFiles(DocumentationPages.ArticlesDirectory, "*.md").Select(Path.GetFileName).Order(StringComparer.Ordinal)!;

    /// <summary>GitHub's and docfx's anchor of each heading: lower case, spaces to hyphens, punctuation dropped.</summary>
    private static HashSet<string> Anchors(string markdown) =>
        Heading().Matches(StripCode(markdown))
            .Select(m => AnchorDrop().Replace(m.Groups["title"].Value.Trim().ToLowerInvariant(), "").Replace(' ', '-'))
            .ToHashSet(StringComparer.Ordinal);

    private static string StripCode(string markdown) => FencedBlock().Replace(markdown, "");

    [GeneratedRegex(@"^\s*href:\s*(?<href>\S+)\s*$", RegexOptions.Multiline)]
    private static partial Regex TocEntry();

    [GeneratedRegex(@"(?<!!)\[[^\]]*\]\((?<target>[^)\s]+)\)")]
    private static partial Regex MarkdownLink();

    [GeneratedRegex(@"!\[[^\]]*\]\((?<target>[^)\s]+)\)")]
    private static partial Regex Picture();

    [GeneratedRegex(@"^#{1,6}\s+(?<title>.+)$", RegexOptions.Multiline)]
    private static partial Regex Heading();

    [GeneratedRegex(@"[^a-z0-9 _-]")]
    private static partial Regex AnchorDrop();

    [GeneratedRegex(@"^```.*?^```", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex FencedBlock();
}
