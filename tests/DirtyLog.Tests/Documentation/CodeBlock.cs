// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Tests.Documentation;

/// <summary>One fenced C# block of a page: where it is, how it is proved (<c>compiled</c>, <c>snippet</c> or no marker) and its code.</summary>
public sealed record CodeBlock(string Page, int Line, string? Kind, string? Name, string Code)
{
    public override string ToString() => Name is null ? $"{Page}:{Line}" : $"{Page}:{Line} ({Kind}: {Name})";
}
