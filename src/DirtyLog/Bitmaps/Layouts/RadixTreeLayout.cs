// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>
/// The bitmap as a radix tree in native memory, in the spirit of the kernel's xarray: 64-way interior nodes above
/// leaves of 512 words. Used where the flat layout cannot span the page space (more than 2^36 pages: a 64-bit IOVA
/// space, say) or cannot be mapped.
/// </summary>
/// <remarks>
/// <para>Nodes and leaves are allocated on the first mark that needs them and published with compare-and-swap; a
/// region never marked costs nothing. Memory stays allocated until <see cref="Dispose"/>: clean leaves are reused.</para>
/// <para>Thread safety: as <see cref="SparseDirtyBitmap"/>'s (every member but <see cref="Dispose"/> lock-free and
/// callable at once). A marker sets its word, then each summary bit on the path bottom-up; a walk takes summary bits
/// top-down and then the words.</para>
/// </remarks>
internal sealed unsafe partial class RadixTreeLayout : IDisposable
{
    // Cache-line alignment lets a harvest test a whole line of 8 words with one vector load.
    private const int Alignment = 64;
    private const int LeafBytes = LeafWords * sizeof(ulong);

    private readonly int _height;
    private TreeNode* _root;
    private long _bytesInUse;

    /// <summary>Creates an empty tree for 2^<paramref name="pageBits"/> pages.</summary>
    public RadixTreeLayout(int pageBits)
    {
        _height = Math.Max(1, (pageBits - LeafPageShift + FanoutShift - 1) / FanoutShift);
        RootSpan = 1UL << (LeafPageShift + (FanoutShift * _height));
        _root = (TreeNode*)AllocateChild(_height);
    }

    /// <summary>Releases the native memory of a tree that was not disposed.</summary>
    ~RadixTreeLayout() => Release();

    /// <summary>Pages the root spans (at least the page space): the end of a whole-bitmap walk.</summary>
    public ulong RootSpan { get; }

    /// <summary>Bytes of nodes and leaves, as requested from the allocator.</summary>
    public long BytesInUse => Volatile.Read(ref _bytesInUse);

    public void Dispose()
    {
        Release();
        GC.SuppressFinalize(this);
    }

    private void Release()
    {
        TreeNode* root = _root;
        if (root != null)
        {
            _root = null;
            FreeSubtree(root, _height);
        }
    }

    /// <summary>Marks one page: its word, then the line summary and every node's bit on the path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Mark(ulong page)
    {
        ulong* leaf = GetOrCreateLeaf(page, out TreeNode* bottom);
        SetBits(ref leaf[(page >> WordShift) & (LeafWords - 1)], 1UL << (int)(page & 63));
        PublishPath(bottom, page, 1UL << (int)((page >> LinePageShift) & (Fanout - 1)));
    }

    /// <summary>The words of leaf <paramref name="leafIndex"/>, created if needed; <paramref name="context"/> is its bottom node.</summary>
    public ulong* OpenLeaf(ulong leafIndex, out nint context)
    {
        ulong* leaf = GetOrCreateLeaf(leafIndex << LeafPageShift, out TreeNode* bottom);
        context = (nint)bottom;
        return leaf;
    }

    /// <summary>Publishes lines <paramref name="lineMask"/> of a leaf opened by <see cref="OpenLeaf"/>, fencing plain stores first when asked.</summary>
    public void PublishLeaf(nint context, ulong leafIndex, ulong lineMask, bool fence)
    {
        var bottom = (TreeNode*)context;
        ulong page = leafIndex << LeafPageShift;
        if (fence)
        {
            // Plain stores must be visible before any summary is read, or a harvest could take the summary, miss a
            // still-buffered word, and leave it under a clear summary. An unconditional atomic OR of the line summary
            // is that fence and the first summary update in one instruction.
            Interlocked.Or(ref TreeNode.LineSummaryOf(bottom, ChildIndex(page, 1)), lineMask);
        }

        PublishPath(bottom, page, lineMask);
    }

    // Upper nodes never use the line summaries, so they are allocated without them.
    private static int NodeBytes(int level) =>
        level == 1 ? sizeof(TreeNode) : (int)Marshal.OffsetOf<TreeNode>(nameof(TreeNode.LineSummary));

    /// <summary>The index of the child of a level-<paramref name="level"/> node that covers <paramref name="page"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ChildIndex(ulong page, int level) =>
        (int)(page >> (LeafPageShift + (FanoutShift * (level - 1)))) & (Fanout - 1);

    /// <summary>Finds the leaf holding <paramref name="page"/>, creating the path to it if needed, and returns its bottom node.</summary>
    /// <remarks>
    /// Unrolled per level (conditions on <see cref="_height"/>, the same for every call, so they predict perfectly) so that each level's shift is a
    /// constant and no loop-carried branch stands between the loads: a generic loop cost twice as much per random mark.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong* GetOrCreateLeaf(ulong page, out TreeNode* bottom)
    {
        TreeNode* node = _root;
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
        for (int i = 0; i < Fanout; i++)
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
