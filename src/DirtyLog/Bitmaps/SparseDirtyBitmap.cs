// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics.CodeAnalysis;
using System.Numerics;
using System.Runtime.Versioning;
using DirtyLog.Bitmaps.Layouts;
using DirtyLog.Internal;

namespace DirtyLog.Bitmaps;

/// <summary>
/// A lock-free, page-granular dirty bitmap over a 64-bit page-number space, written by many
/// trackers at once and harvested (read and cleared) into runs of dirty pages.
/// </summary>
/// <remarks>
/// <para><b>Shape.</b> On Linux, for page spaces of up to 2^36 pages (a 48-bit space of 4 KiB pages), flat arrays in one
/// lazily backed mapping: a word per 64 pages for the whole space, as a dense bitmap has, so a mark computes its word's
/// address with one shift; beside them small summary arrays: one byte per 64-byte line of words, then one byte per 64
/// bytes of the level below, up to a top level of at most 8 KiB. Linux backs a page of the mapping with memory only
/// where it is written, so a region never marked costs nothing: a fully dirty 1 TiB guest (2^28 pages of 4 KiB) costs
/// 32 MiB of words and about 1.6% more of summaries, and a 48-bit IOVA space with a few mappings a few 4 KiB pages per
/// marked piece. Wider spaces (a 64-bit IOVA space), other systems, or a system that refuses the address space use a
/// radix tree with the same summaries (as bits) instead: 64-way nodes above leaves of 512 words, allocated on the first
/// mark that needs them. Memory stays in use until <see cref="Dispose()"/>: clean words are reused by later marks.</para>
/// <para><b>Summaries.</b> A harvest follows set summaries only, so a clean bitmap of any size is harvested in a
/// few microseconds, and a dirty line is found without scanning its clean neighbours; the harvest asks the memory
/// system for the dirty lines ahead of the one it takes, and walks a fully dirty stretch as a dense bitmap would.</para>
/// <para><b>Thread safety.</b> Every member except <see cref="Dispose()"/> may be called from any
/// number of threads at once, with no lock: marks and merges (<see cref="Mark"/>,
/// <see cref="MarkRange"/>, <see cref="MergeBitmap(ReadOnlySpan{ulong}, ulong, ulong)"/>) use one
/// atomic OR per 64-bit word they change (none for a word that already holds their bits) and, in the flat layout,
/// plain loads and stores of summary bytes (in the tree, one atomic OR per summary word whose bit was clear);
/// harvests take each dirty word and summary with one atomic exchange, and in the flat layout issue one process-wide
/// memory barrier per summary level above the line bytes they take.
/// Concurrent harvests are allowed and partition the dirty pages between them. Dispose must not
/// race any other call: it frees the native memory the others read.</para>
/// <para><b>Ordering contract</b> (the rule of the kernel's <c>dirty_log_test</c>):</para>
/// <list type="number">
/// <item><description>A mark that completes before a harvest starts is returned by that harvest (or, if
/// that harvest's sink stops it early, by a later one; see <see cref="IDirtyRunSink"/>).</description></item>
/// <item><description>A mark racing a harvest is returned by that harvest or the next one.</description></item>
/// <item><description>A page is returned again only if it was marked again after it was returned.</description></item>
/// <item><description>Nothing is returned that was never marked.</description></item>
/// </list>
/// <para>Why it holds: a marker sets (or sees set) its word bit, then each summary bit above it bottom-up, checking
/// every level even when a lower one was already set; a harvest takes summary bits top-down and then exchanges the
/// words. All of these are sequentially consistent atomics, or reads that follow one. If the harvest takes some
/// summary bit before the marker has set it, the marker sets it afterwards and every bit above it too, and the
/// word bit is either already taken by this harvest or left set under a fully set path for the next
/// one. Otherwise every bit on the path was set before the harvest took it, so the harvest reaches
/// the word after the word bit was set and takes it. (The flat layout's markers store summary bytes plainly; the
/// harvest's process-wide barrier after taking a level gives their store-then-load the order this argument needs.)</para>
/// </remarks>
public sealed partial class SparseDirtyBitmap : IDisposable
{
    private readonly int _pageShift;
    private readonly int _addressWidth;
    private readonly ulong _pageCount;
    private readonly ulong _rootSpan;

    // Exactly one layout is set until Dispose clears both; the hot paths test the flat one first.
    private FlatLayout? _flat;
    private RadixTreeLayout? _tree;

    /// <summary>Creates an empty bitmap for addresses of <paramref name="addressWidth"/> bits in pages of <paramref name="pageSize"/> bytes.</summary>
    /// <param name="addressWidth">
    /// Bits of the byte address space covered: 40 for a 1 TiB guest, 48 for a typical IOVA aperture,
    /// up to 64. Pages number from 0 to 2^(<paramref name="addressWidth"/> - log2(<paramref name="pageSize"/>)) - 1.
    /// </param>
    /// <param name="pageSize">Bytes per page: a power of two, at least 4096.</param>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="pageSize"/> is not a power of two of at least 4096, or <paramref name="addressWidth"/>
    /// is below log2(<paramref name="pageSize"/>) or above 64.
    /// </exception>
    public SparseDirtyBitmap(int addressWidth, long pageSize = 4096)
    {
        int pageBits = PageBits(addressWidth, pageSize);
        _pageShift = addressWidth - pageBits;
        _addressWidth = addressWidth;
        _pageCount = 1UL << pageBits;
        if (OperatingSystem.IsLinux())
        {
            _flat = FlatLayout.TryCreate(pageBits);
        }

        if (IsFlat)
        {
            _rootSpan = _flat.RootSpan;
        }
        else
        {
            _tree = new RadixTreeLayout(pageBits);
            _rootSpan = _tree.RootSpan;
        }
    }

    /// <summary>Bytes per page.</summary>
    public long PageSize => 1L << _pageShift;

    /// <summary>log2 of <see cref="PageSize"/>: a byte address shifted right by this is a page number.</summary>
    public int PageShift => _pageShift;

    /// <summary>Bits of the byte address space covered.</summary>
    public int AddressWidth => _addressWidth;

    /// <summary>The number of pages in the page space; valid page numbers are below it.</summary>
    public ulong PageCount => _pageCount;

    /// <summary>Bytes of memory backing the bitmap: the touched pages of the flat layout's mapping, or the tree's nodes and leaves; 0 once disposed.</summary>
    /// <remarks>
    /// Grows as new regions are marked; never shrinks before disposal. Safe to read at any time. For the flat layout it
    /// asks the kernel (<c>mincore</c> over the mapping, about a millisecond for a 48-bit space): a diagnostic, not a hot
    /// path. The kernel's page tables for the touched pages are not counted.
    /// </remarks>
    public long BytesInUse => IsFlat ? _flat.BytesInUse : _tree?.BytesInUse ?? 0;

    /// <summary>Frees the native memory. Must not race any other call on this bitmap.</summary>
    public void Dispose()
    {
        if (IsFlat)
        {
            _flat.Dispose();
        }

        _tree?.Dispose();
        _flat = null;
        _tree = null;
    }

    /// <summary>Whether the flat layout is in use, which implies Linux.</summary>
    [SupportedOSPlatformGuard("linux")]
    [MemberNotNullWhen(true, nameof(_flat))]
    private bool IsFlat => _flat is not null;

    /// <summary>The tree, when the flat layout is not in use; throws once disposed.</summary>
    private RadixTreeLayout Tree
    {
        get
        {
            RadixTreeLayout? tree = _tree;
            if (tree is null)
            {
                ThrowHelper.ThrowObjectDisposed(this);
            }

            return tree;
        }
    }

    internal const int MinPageSize = 4096;

    /// <summary>Checks a geometry as the constructor does and returns log2 of its page count.</summary>
    /// <exception cref="ArgumentOutOfRangeException">As the constructor's.</exception>
    internal static int PageBits(int addressWidth, long pageSize)
    {
        if (pageSize < MinPageSize || !BitOperations.IsPow2(pageSize))
        {
            throw new ArgumentOutOfRangeException(nameof(pageSize), pageSize,
                $"The page size must be a power of two of at least {MinPageSize} bytes.");
        }

        int pageShift = BitOperations.Log2((ulong)pageSize);
        if (addressWidth < pageShift || addressWidth > 64)
        {
            throw new ArgumentOutOfRangeException(nameof(addressWidth), addressWidth,
                $"The address width must be between {pageShift} (one page of {pageSize} bytes) and 64 bits.");
        }

        return addressWidth - pageShift;
    }

    private void CheckRange(ulong firstPage, ulong pageCount, string paramName)
    {
        ulong end = firstPage + pageCount;
        if (end < firstPage || end > _pageCount)
        {
            ThrowHelper.ThrowRangeOutOfRange(paramName, firstPage, pageCount, _pageCount);
        }
    }
}
