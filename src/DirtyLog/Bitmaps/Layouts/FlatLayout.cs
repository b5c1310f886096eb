// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Versioning;
using System.Threading;
using DirtyLog.Native;
using static DirtyLog.Bitmaps.Layouts.LeafOps;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>
/// The bitmap as flat arrays in one lazily backed mapping: a word per 64 pages for the whole page space, then summary
/// levels of one byte per 64-byte line of words (level 1), one byte per 64 bytes of the level below (levels 2 and up),
/// up to a top level of at most <see cref="TopBytes"/> bytes that a walk scans. A page's word and summary bytes are
/// found by shifts, as in a dense bitmap.
/// </summary>
/// <remarks>
/// <para><b>Why bytes.</b> A summary byte is set with a plain store: no other marker's update can be lost, as a read,
/// OR and write of a shared summary word could lose one, so a mark costs one atomic OR on its word and plain loads and
/// stores of summaries that stay in cache. A harvest takes summary bytes with atomic exchanges.</para>
/// <para><b>Ordering.</b> A marker sets its word (an atomic OR, which is a full fence, or plain stores of all ones
/// followed by a releasing store of the line's byte), then the byte of each level bottom-up, each only if it reads
/// clear, and checks every level even when a lower byte was already set (its setter may not have reached the levels
/// above). A walk takes bytes top-down, then the words. A marker's store to one level and its load of the next may be
/// reordered by the processor (a store buffer), so after taking the bytes of a level at or above 2 a harvest issues a
/// process-wide memory barrier (<see cref="Interlocked.MemoryBarrierProcessWide"/>, a few hundred nanoseconds) before
/// it reads the level below: every marker that saw the taken byte set has then made its store below visible, and every
/// marker that has not yet loaded the byte will see it clear and set it again. Marks pay nothing for this; a harvest
/// pays one barrier per summary byte of level 3 or above it takes (one in all for spaces of up to 2^28 pages).</para>
/// <para><b>Memory.</b> The mapping is private, anonymous and unreserved: Linux backs a page of it with memory only
/// when it is first written, so the operating system's lazy paging is the sparse allocator. A fully dirty 1 TiB guest
/// (2^28 pages) costs 32 MiB of words and 520 KiB of summaries (1.6%); 1 GiB marked in 2 MiB pieces over a 48-bit space
/// about two 4 KiB pages per piece (one of words, one of line bytes) plus at most 2 MiB of upper levels, and the
/// kernel's page tables for them. Huge pages are refused for the mapping, so one mark never costs 2 MiB.</para>
/// <para><b>Span.</b> At most 2^<see cref="MaxPageBits"/> pages: 8 GiB of address space for the words (a 48-bit space of
/// 4 KiB pages). Wider spaces use <see cref="RadixTreeLayout"/>.</para>
/// <para><b>Thread safety.</b> As <see cref="SparseDirtyBitmap"/>'s: every member but <see cref="Dispose"/> is lock-free
/// and callable from any number of threads at once.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
internal sealed unsafe partial class FlatLayout : IDisposable
{
    /// <summary>The widest page space (log2 of its pages) the flat layout spans.</summary>
    internal const int MaxPageBits = 36;

    /// <summary>The most bytes of the top summary level, which every walk scans: 8 KiB, the top of a 1 TiB guest's bitmap.</summary>
    internal const int TopBytes = 8192;

    private const int MaxHeight = 4;

    private readonly AnonymousMapping _mapping;
    private readonly int _height;
    private readonly ulong* _words;
    private readonly byte* _level1;
    private readonly byte* _level2;
    private readonly byte* _level3;
    private readonly byte* _level4;
    private readonly ulong _topCount;

    private FlatLayout(int pageBits)
    {
        _height = Height(pageBits);
        ulong wordBytes = Math.Max(LeafWords * sizeof(ulong), (1UL << pageBits) / 8);
        Span<ulong> offsets = stackalloc ulong[MaxHeight + 1];
        ulong total = wordBytes;
        for (int level = 1; level <= _height; level++)
        {
            offsets[level] = total;
            total += AlignUp(LevelBytes(pageBits, level), 64);
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
        _level1 = start + offsets[1];
        _level2 = _height >= 2 ? start + offsets[2] : null;
        _level3 = _height >= 3 ? start + offsets[3] : null;
        _level4 = _height >= 4 ? start + offsets[4] : null;
        _topCount = LevelBytes(pageBits, _height);
        RootSpan = 1UL << (LinePageShift + (FanoutShift * (_height - 1)) + BitOperations.Log2(AlignUp(_topCount, 64)));

        // Every walk scans the top level; write it once so that scanning it never maps a page (a walk reads any other
        // summary byte or line only below a set byte, whose marker wrote it), and BytesInUse counts only marks.
        new Span<byte>(Level(_height), (int)AlignUp(_topCount, 64)).Clear();
        Thread.MemoryBarrier();
    }

    /// <summary>Pages the top level spans (at least the page space): the end of a whole-bitmap walk.</summary>
    public ulong RootSpan { get; }

    /// <summary>Bytes of the mapping backed by memory (touched pages), from the kernel.</summary>
    public long BytesInUse => (long)_mapping.ResidentBytes();

    /// <summary>
    /// Creates the layout for 2^<paramref name="pageBits"/> pages, or returns <see langword="null"/> when it cannot span
    /// them, the process is 32-bit, or the mapping is refused.
    /// </summary>
    public static FlatLayout? TryCreate(int pageBits)
    {
        if (pageBits > MaxPageBits || !Environment.Is64BitProcess)
        {
            // A 32-bit process has no room for the words of a wide space (8 GiB for 48 bits).
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

    /// <summary>Marks one page: an atomic OR on its word (a full fence), then its line's byte and every level's above.</summary>
    /// <remarks>
    /// The layout's fields are read into locals before the atomic OR: loads after it wait for it to complete, and a
    /// field load in front of each summary load made two dependent loads per level out of one (measured: about 6 ns of
    /// a 20 ns mark at 0.1% random after a harvest).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Mark(ulong page)
    {
        byte* level1 = _level1;
        byte* level2 = _level2;
        int height = _height;
        ulong line = page >> LinePageShift;
        SetBits(ref _words[page >> WordShift], 1UL << (int)page);
        SetByte(level1 + line);
        if (height > 1)
        {
            SetByte(level2 + (line >> FanoutShift));
            if (height > 2)
            {
                PublishHigher(line >> (2 * FanoutShift));
            }
        }
    }

    /// <summary>The words of leaf <paramref name="leafIndex"/> (64 lines, 32,768 pages).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong* OpenLeaf(ulong leafIndex) => _words + (leafIndex << LeafWordShift);

    /// <summary>Publishes lines <paramref name="lineMask"/> of a leaf whose words were written (some perhaps by plain stores).</summary>
    /// <remarks>
    /// Each line's byte is stored unconditionally with release semantics: the store cannot become visible before the
    /// words, so a harvest that takes the byte finds them, and one that took it earlier finds it set again. (Skipping the
    /// store of a byte already set would let still-buffered plain stores of words become visible after a harvest took it.)
    /// </remarks>
    public void PublishLeaf(ulong leafIndex, ulong lineMask)
    {
        byte* lines = _level1 + (leafIndex << FanoutShift);
        while (lineMask != 0)
        {
            Volatile.Write(ref lines[BitOperations.TrailingZeroCount(lineMask)], 1);
            lineMask &= lineMask - 1;
        }

        PublishAbove(leafIndex);
    }

    /// <summary>Sets the byte of <paramref name="leaf"/> in level 2 and each level's byte above it, where clear.</summary>
    /// <remarks>
    /// Straight-line levels with early exits: the exits are always taken at the same height, so they predict perfectly.
    /// Each level is a load of a line that stays in cache, and a store only for a clear byte.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PublishAbove(ulong leaf)
    {
        if (_height > 1)
        {
            SetByte(_level2 + leaf);
            if (_height > 2)
            {
                PublishHigher(leaf >> FanoutShift);
            }
        }
    }

    /// <summary>Sets the bytes of levels 3 and 4 above level-3 index <paramref name="index"/>: spaces wider than 2^28 pages only.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void PublishHigher(ulong index)
    {
        SetByte(_level3 + index);
        if (_height > 3)
        {
            SetByte(_level4 + (index >> FanoutShift));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SetByte(byte* summary)
    {
        if (Volatile.Read(ref *summary) == 0)
        {
            Volatile.Write(ref *summary, 1);
        }
    }

    /// <summary>The bytes of summary level <paramref name="level"/> (1 to the height).</summary>
    private byte* Level(int level) => level switch
    {
        1 => _level1,
        2 => _level2,
        3 => _level3,
        _ => _level4,
    };

    /// <summary>Summary levels for 2^<paramref name="pageBits"/> pages: enough that the top level holds at most <see cref="TopBytes"/> bytes.</summary>
    private static int Height(int pageBits)
    {
        int height = 1;
        while (LevelBytes(pageBits, height) > TopBytes)
        {
            height++;
        }

        return height;
    }

    /// <summary>Bytes of summary level <paramref name="level"/>: one per line at level 1, one per 64 bytes below above it.</summary>
    private static ulong LevelBytes(int pageBits, int level)
    {
        int bytePagesShift = LinePageShift + (FanoutShift * (level - 1));
        return pageBits <= bytePagesShift ? 1 : 1UL << (pageBits - bytePagesShift);
    }

    private static ulong AlignUp(ulong value, ulong alignment) => (value + alignment - 1) & ~(alignment - 1);
}
