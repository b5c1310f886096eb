// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.CompilerServices;
using System.Runtime.Versioning;
using System.Threading;
using DirtyLog.Native;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>
/// The bitmap as flat arrays in one lazily backed mapping: a word per 64 pages for the whole page space, then summary
/// levels of one bit per 64-byte line (level 1), one bit per word of the level below (levels 2 and up), up to a single
/// top word. A page's word and summary bits are found by shifts, as in a dense bitmap.
/// </summary>
/// <remarks>
/// <para><b>Memory.</b> The mapping is private, anonymous and unreserved: Linux backs a page of it with memory only when
/// it is first written, so the operating system's lazy paging is the sparse allocator. A fully dirty 1 TiB guest
/// (2^28 pages) costs 32 MiB of words and 66 KiB of summaries; 1 GiB marked in 2 MiB pieces over a 48-bit space costs
/// about two 4 KiB pages per piece (one of words, one of line summaries) plus at most 260 KiB of upper levels, and
/// the kernel's page tables for them. Huge pages are refused for the mapping, so one mark never costs 2 MiB.</para>
/// <para><b>Span.</b> At most 2^<see cref="MaxPageBits"/> pages: 8 GiB of address space for the words (a 48-bit space of
/// 4 KiB pages). Wider spaces use <see cref="RadixTreeLayout"/>.</para>
/// <para><b>Thread safety and ordering.</b> As <see cref="SparseDirtyBitmap"/>'s: a marker sets its word, then its line
/// summary bit and the bit of every level above, bottom-up, checking each level even when a lower bit was already
/// set (another marker may have set it and not yet reached the levels above); a walk takes summary bits top-down,
/// then the words. Every write is an atomic OR, exchange or AND, or a plain store of all ones fenced before its
/// summary is published.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
internal sealed unsafe partial class FlatLayout : IDisposable
{
    /// <summary>The widest page space (log2 of its pages) the flat layout spans.</summary>
    internal const int MaxPageBits = 36;

    private const int MaxHeight = 5;

    private readonly AnonymousMapping _mapping;
    private readonly int _height;
    private readonly ulong* _words;
    private readonly ulong* _level1;
    private readonly ulong* _level2;
    private readonly ulong* _level3;
    private readonly ulong* _level4;
    private readonly ulong* _level5;

    private FlatLayout(int pageBits)
    {
        _height = Height(pageBits);
        ulong wordBytes = Math.Max(LeafWords * sizeof(ulong), (1UL << pageBits) / 8);
        Span<ulong> offsets = stackalloc ulong[MaxHeight + 1];
        ulong total = wordBytes;
        for (int level = 1; level <= _height; level++)
        {
            offsets[level] = total;
            total += AlignUp(LevelWords(pageBits, level) * sizeof(ulong), 64);
        }

        _mapping = new AnonymousMapping(AlignUp(total, 4096));
        try
        {
            // A fully dirty bitmap would gain little from huge pages, and a sparse one would pay 2 MiB per mark.
            _mapping.SetHugePages(false);
        }
        catch (KernelException)
        {
            // A kernel without transparent huge pages refuses the advice: there is nothing to refuse then.
        }

        byte* start = (byte*)_mapping.Address;
        _words = (ulong*)start;
        _level1 = (ulong*)(start + offsets[1]);
        _level2 = _height >= 2 ? (ulong*)(start + offsets[2]) : null;
        _level3 = _height >= 3 ? (ulong*)(start + offsets[3]) : null;
        _level4 = _height >= 4 ? (ulong*)(start + offsets[4]) : null;
        _level5 = _height >= 5 ? (ulong*)(start + offsets[5]) : null;
        RootSpan = 1UL << (LinePageShift + (FanoutShift * _height));

        // Every walk reads the top word; write it once so that reading it never maps a page (a walk reads any other
        // summary word or line only below a set bit, whose marker wrote it), and BytesInUse counts only marks.
        Volatile.Write(ref Level(_height)[0], 0);
    }

    /// <summary>Pages the top word spans (at least the page space): the end of a whole-bitmap walk.</summary>
    public ulong RootSpan { get; }

    /// <summary>Bytes of the mapping backed by memory (touched pages), from the kernel.</summary>
    public long BytesInUse => (long)_mapping.ResidentBytes();

    /// <summary>Creates the layout for 2^<paramref name="pageBits"/> pages, or returns <see langword="null"/> when it cannot span them or the mapping is refused.</summary>
    public static FlatLayout? TryCreate(int pageBits)
    {
        if (pageBits > MaxPageBits)
        {
            return null;
        }

        try
        {
            return new FlatLayout(pageBits);
        }
        catch (KernelException)
        {
            // Address space refused (a strict overcommit policy counts unreserved mappings): the tree allocates as it goes.
            return null;
        }
    }

    public void Dispose() => _mapping.Dispose();

    /// <summary>Marks one page: its word, then its line summary bit and every level's bit above, bottom-up.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Mark(ulong page)
    {
        ulong leaf = page >> LeafPageShift;
        SetBits(ref _words[page >> WordShift], 1UL << (int)page);
        SetBits(ref _level1[leaf], 1UL << (int)(page >> LinePageShift));
        PublishAbove(leaf);
    }

    /// <summary>The words of leaf <paramref name="leafIndex"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong* OpenLeaf(ulong leafIndex) => _words + (leafIndex << LeafWordShift);

    /// <summary>Publishes lines <paramref name="lineMask"/> of a leaf, fencing plain stores first when asked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PublishLeaf(ulong leafIndex, ulong lineMask, bool fence)
    {
        if (fence)
        {
            // The unconditional atomic OR is the fence that makes the plain stores visible before any summary is
            // read, and the line summary's update in the same instruction.
            Interlocked.Or(ref _level1[leafIndex], lineMask);
        }
        else
        {
            SetBits(ref _level1[leafIndex], lineMask);
        }

        PublishAbove(leafIndex);
    }

    /// <summary>Sets the bit of <paramref name="leaf"/> in level 2 and each level's bit above it.</summary>
    /// <remarks>
    /// Straight-line levels with early exits: the exits are always taken at the same height, so they predict perfectly,
    /// and every shift is a constant. Each level is a plain read of a line that stays in cache, and an atomic OR only
    /// for a clear bit.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PublishAbove(ulong leaf)
    {
        int height = _height;
        if (height == 1) { return; }
        SetBits(ref _level2[leaf >> FanoutShift], 1UL << (int)leaf);
        if (height == 2) { return; }
        leaf >>= FanoutShift;
        SetBits(ref _level3[leaf >> FanoutShift], 1UL << (int)leaf);
        if (height == 3) { return; }
        leaf >>= FanoutShift;
        SetBits(ref _level4[leaf >> FanoutShift], 1UL << (int)leaf);
        if (height == 4) { return; }
        leaf >>= FanoutShift;
        SetBits(ref _level5[leaf >> FanoutShift], 1UL << (int)leaf);
    }

    /// <summary>The words of summary level <paramref name="level"/> (1 to the height).</summary>
    private ulong* Level(int level) => level switch
    {
        1 => _level1,
        2 => _level2,
        3 => _level3,
        4 => _level4,
        _ => _level5,
    };

    /// <summary>Summary levels for 2^<paramref name="pageBits"/> pages: enough that the top level is one word.</summary>
    private static int Height(int pageBits) => Math.Max(1, (pageBits - LinePageShift + FanoutShift - 1) / FanoutShift);

    /// <summary>Words of summary level <paramref name="level"/>: one bit per line at level 1, per word below above it.</summary>
    private static ulong LevelWords(int pageBits, int level)
    {
        int wordPagesShift = LinePageShift + (FanoutShift * level);
        return pageBits <= wordPagesShift ? 1 : 1UL << (pageBits - wordPagesShift);
    }

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);
}
