// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;

namespace DirtyLog.Bitmaps;

/// <summary>The radix tree: layout constants, lazy creation, summary publication and release.</summary>
public sealed unsafe partial class SparseDirtyBitmap
{
    internal const int MinPageSize = 4096;
    internal const int WordShift = 6;
    internal const int LeafWordShift = 9;
    internal const int LeafWords = 1 << LeafWordShift;
    internal const int LeafPageShift = WordShift + LeafWordShift;
    internal const int LineWords = 8;
    internal const int LinePageShift = WordShift + 3;
    internal const int NodeFanoutShift = 6;
    internal const int NodeFanout = 1 << NodeFanoutShift;
    internal const int LeafBytes = LeafWords * sizeof(ulong);

    // Cache-line alignment lets a harvest test a whole line of 8 words with one vector load.
    private const int Alignment = 64;

    // Upper nodes never use the line summaries, so they are allocated without them.
    private static int NodeBytes(int level) =>
        level == 1 ? sizeof(TreeNode) : (int)Marshal.OffsetOf<TreeNode>(nameof(TreeNode.LineSummary));

    /// <summary>The index of the child of a level-<paramref name="level"/> node that covers <paramref name="page"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ChildIndex(ulong page, int level) =>
        (int)(page >> (LeafPageShift + (NodeFanoutShift * (level - 1)))) & (NodeFanout - 1);

    /// <summary>Finds the leaf holding <paramref name="page"/>, creating the path to it if needed, and returns its bottom node.</summary>
    /// <remarks>
    /// Unrolled per level (conditions on <see cref="_height"/>, the same for every call, so they predict perfectly) so that each level's shift is a
    /// constant and no loop-carried branch stands between the loads: a generic loop cost twice as much per random mark.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong* GetOrCreateLeaf(TreeNode* root, ulong page, out TreeNode* bottom)
    {
        TreeNode* node = root;
        int height = _height;
        if (height >= 7) { node = Descend(node, page, 7); }
        if (height >= 6) { node = Descend(node, page, 6); }
        if (height >= 5) { node = Descend(node, page, 5); }
        if (height >= 4) { node = Descend(node, page, 4); }
        if (height >= 3) { node = Descend(node, page, 3); }
        if (height >= 2) { node = Descend(node, page, 2); }

        bottom = node;
        int leafIndex = ChildIndex(page, 1);
        ulong leaf = Volatile.Read(ref TreeNode.ChildSlot(node, leafIndex));
        return leaf != 0 ? (ulong*)leaf : (ulong*)CreateChild(node, leafIndex, 0);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private TreeNode* Descend(TreeNode* node, ulong page, int level)
    {
        int index = ChildIndex(page, level);
        ulong child = Volatile.Read(ref TreeNode.ChildSlot(node, index));
        return child != 0 ? (TreeNode*)child : (TreeNode*)CreateChild(node, index, level - 1);
    }

    /// <summary>
    /// Makes the summaries above <paramref name="page"/>'s leaf show its dirty lines: the leaf's line summary in
    /// <paramref name="bottom"/> first, then each node's bit, bottom-up through the parent links. Call after the
    /// words were set (and fenced).
    /// </summary>
    /// <remarks>
    /// Every level is checked even when a lower bit was already set: that bit may belong to a marker that
    /// has not yet reached the levels above, and a mark must be visible from the root when it returns.
    /// The checks are plain reads of lines that stay in cache; an atomic OR happens only for a clear bit.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PublishPath(TreeNode* bottom, ulong page, ulong lineMask)
    {
        // Straight-line levels with early exits: the exits are always taken at the same height, so they
        // predict perfectly, and every shift is a constant.
        int height = _height;
        SetBits(ref TreeNode.LineSummaryOf(bottom, ChildIndex(page, 1)), lineMask);
        SetBits(ref bottom->Summary, 1UL << ChildIndex(page, 1));
        TreeNode* node = bottom;
        if (height == 1) { return; }
        node = Up(node, page, 2);
        if (height == 2) { return; }
        node = Up(node, page, 3);
        if (height == 3) { return; }
        node = Up(node, page, 4);
        if (height == 4) { return; }
        node = Up(node, page, 5);
        if (height == 5) { return; }
        node = Up(node, page, 6);
        if (height == 6) { return; }
        Up(node, page, 7);
    }

    /// <summary>Moves to the parent of <paramref name="node"/> (at <paramref name="level"/>) and sets its bit for <paramref name="page"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TreeNode* Up(TreeNode* node, ulong page, int level)
    {
        TreeNode* parent = node->Parent;
        SetBits(ref parent->Summary, 1UL << ChildIndex(page, level));
        return parent;
    }

    /// <summary>Sets <paramref name="mask"/> in <paramref name="target"/>, with no atomic when the bits are already there.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void SetBits(ref ulong target, ulong mask)
    {
        if ((Volatile.Read(ref target) & mask) != mask)
        {
            Interlocked.Or(ref target, mask);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void* CreateChild(TreeNode* parent, int index, int childLevel)
    {
        void* block = AllocateChild(childLevel);
        if (childLevel > 0)
        {
            // The link is written before the child is published, so every reader sees it.
            ((TreeNode*)block)->Parent = parent;
        }

        ulong fresh = (ulong)block;
        ulong winner = Interlocked.CompareExchange(ref TreeNode.ChildSlot(parent, index), fresh, 0);
        if (winner != 0)
        {
            // Another thread published this child first: use theirs.
            FreeBlock(block, childLevel);
            return (void*)winner;
        }

        return block;
    }

    /// <summary>Allocates a zeroed node of <paramref name="level"/> (a leaf when 0) and counts its bytes.</summary>
    private void* AllocateChild(int level)
    {
        nuint bytes = (nuint)(level == 0 ? LeafBytes : NodeBytes(level));
        void* block = NativeMemory.AlignedAlloc(bytes, Alignment);
        NativeMemory.Clear(block, bytes);
        Interlocked.Add(ref _bytesInUse, (long)bytes);
        return block;
    }

    private void FreeBlock(void* block, int level)
    {
        NativeMemory.AlignedFree(block);
        Interlocked.Add(ref _bytesInUse, -(level == 0 ? LeafBytes : NodeBytes(level)));
    }

    private void FreeSubtree(TreeNode* node, int level)
    {
        for (int i = 0; i < NodeFanout; i++)
        {
            ulong child = TreeNode.ChildSlot(node, i);
            if (child == 0)
            {
                continue;
            }

            if (level == 1)
            {
                FreeBlock((void*)child, 0);
            }
            else
            {
                FreeSubtree((TreeNode*)child, level - 1);
            }
        }

        FreeBlock(node, level);
    }
}
