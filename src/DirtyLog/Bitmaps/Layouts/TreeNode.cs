// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>An interior node of the sparse bitmap's radix tree, in native memory.</summary>
/// <remarks>
/// <para>
/// A node has 64 children. <see cref="Summary"/> has bit <c>i</c> set when child <c>i</c> may hold a
/// dirty page; it is set after the page's bit (bottom-up) by markers and taken before the words
/// (top-down) by harvests, which is what makes the summary a safe skip list (see
/// <see cref="SparseDirtyBitmap"/>'s ordering argument).
/// </para>
/// <para>
/// Children are published once with compare-and-swap and never removed until the bitmap is
/// disposed, so a reader that loaded a child pointer may use it without further checks.
/// Bottom nodes (level 1) point at leaves and also hold, per leaf, a line summary: bit <c>l</c>
/// set when the leaf's 64-byte line <c>l</c> (8 words, 512 pages) may hold a dirty page. Keeping
/// line summaries here rather than in the leaves puts all of them for 1 TiB of guest in 64 KiB,
/// which stays in cache while random marks miss on the words.
/// </para>
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct TreeNode
{
    /// <summary>Bit <c>i</c>: child <c>i</c> may hold a dirty page.</summary>
    public ulong Summary;

    /// <summary>The parent node, null at the root. Markers publish summaries bottom-up by following it.</summary>
    public TreeNode* Parent;

    // Keeps the header (summary and parent link, read together when publishing) alone on its cache
    // line, away from the child pointers of every descent.
    private fixed ulong _padding[6];

    /// <summary>Child pointers (a <see cref="TreeNode"/> or, in bottom nodes, a leaf of words), 0 while absent.</summary>
    public fixed ulong Children[LeafOps.Fanout];

    /// <summary>Bottom nodes only: per leaf, bit <c>l</c> set when line <c>l</c> of that leaf may hold a dirty page.</summary>
    public fixed ulong LineSummary[LeafOps.Fanout];

    private const int ChildrenWord = 8;
    private const int LineSummaryWord = ChildrenWord + LeafOps.Fanout;

    // Hot paths reach the arrays by plain pointer arithmetic: taking a ref to a fixed buffer element makes
    // the JIT load the node's first byte as a null check, one more cache line per level on every mark.

    /// <summary>The slot of child <paramref name="index"/> of <paramref name="node"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref ulong ChildSlot(TreeNode* node, int index) => ref *((ulong*)node + ChildrenWord + index);

    /// <summary>The line summary of leaf <paramref name="index"/> of bottom node <paramref name="node"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref ulong LineSummaryOf(TreeNode* node, int index) => ref *((ulong*)node + LineSummaryWord + index);
}
