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
    internal const int MaxHeight = 8;
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

    /// <summary>Finds the leaf holding <paramref name="page"/>, creating the path to it if needed, and records the nodes passed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong* GetOrCreateLeaf(TreeNode* root, ulong page, ref NodePath path)
    {
        TreeNode* node = root;
        for (int level = _height; ; level--)
        {
            path[level - 1] = (nint)node;
            ref ulong slot = ref node->Children[ChildIndex(page, level)];
            ulong child = Volatile.Read(ref slot);
            if (child == 0)
            {
                child = CreateChild(ref slot, level - 1);
            }

            if (level == 1)
            {
                return (ulong*)child;
            }

            node = (TreeNode*)child;
        }
    }

    /// <summary>
    /// Makes the summaries on the path of <paramref name="page"/> show its leaf's dirty lines: the leaf's line
    /// summary first, then each node's bit, bottom-up. Call after the words were set (and fenced).
    /// </summary>
    /// <remarks>
    /// Every level is checked even when a lower bit was already set: that bit may belong to a marker that
    /// has not yet reached the levels above, and a mark must be visible from the root when it returns.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PublishPath(ref NodePath path, ulong page, ulong lineMask)
    {
        TreeNode* bottom = (TreeNode*)path[0];
        SetBits(ref bottom->LineSummary[ChildIndex(page, 1)], lineMask);
        for (int level = 1; level <= _height; level++)
        {
            TreeNode* node = (TreeNode*)path[level - 1];
            SetBits(ref node->Summary, 1UL << ChildIndex(page, level));
        }
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
    private ulong CreateChild(ref ulong slot, int childLevel)
    {
        ulong fresh = (ulong)AllocateChild(childLevel);
        ulong winner = Interlocked.CompareExchange(ref slot, fresh, 0);
        if (winner != 0)
        {
            // Another thread published this child first: use theirs.
            FreeBlock((void*)fresh, childLevel);
            return winner;
        }

        return fresh;
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
            ulong child = node->Children[i];
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

    /// <summary>The nodes passed on the way from the root to a leaf, indexed by level - 1.</summary>
    [InlineArray(MaxHeight)]
    internal struct NodePath
    {
        private nint _node;
    }
}
