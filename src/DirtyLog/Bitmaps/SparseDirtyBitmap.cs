// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Numerics;
using System.Threading;
using DirtyLog.Internal;

namespace DirtyLog.Bitmaps;

/// <summary>
/// A lock-free, page-granular dirty bitmap over a 64-bit page-number space, written by many
/// trackers at once and harvested (read and cleared) into runs of dirty pages.
/// </summary>
/// <remarks>
/// <para><b>Shape.</b> A radix tree in native memory, in the spirit of the kernel's xarray: 64-way
/// interior nodes above 4 KiB leaves of 512 words (32,768 pages each). Nodes and leaves are
/// allocated on the first mark that needs them and published with compare-and-swap; a region
/// never marked costs nothing, so a 48-bit IOVA space with a few mappings stays small, while a
/// fully dirty 1 TiB guest (2^28 pages of 4 KiB) costs 32 MiB of leaves plus about 0.5% of nodes.
/// Memory stays allocated until <see cref="Dispose()"/>: clean leaves are reused by later marks.</para>
/// <para><b>Summaries.</b> Every node keeps one bit per child ("may hold a dirty page"), and every
/// leaf one bit per 64-byte line of 8 words. A harvest follows set bits only, so a clean region
/// costs nothing to harvest, whatever its size, and a dirty line is found without scanning its
/// clean neighbours.</para>
/// <para><b>Thread safety.</b> Every member except <see cref="Dispose()"/> may be called from any
/// number of threads at once, with no lock: marks and merges (<see cref="Mark"/>,
/// <see cref="MarkRange"/>, <see cref="MergeBitmap(ReadOnlySpan{ulong}, ulong, ulong)"/>) use one
/// atomic OR per 64-bit word they change (none for a word that already holds their bits), plus
/// one per summary word whose bit was clear; harvests take each dirty word with one atomic exchange.
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
/// <para>Why it holds: a marker sets (or sees set) its word bit, then each summary bit on the path
/// bottom-up; a harvest takes summary bits top-down and then exchanges the words. All of these are
/// sequentially consistent atomics, or reads that follow one. If the harvest takes some summary bit
/// before the marker has set it, the marker sets it afterwards and every bit above it too, and the
/// word bit is either already taken by this harvest or left set under a fully set path for the next
/// one. Otherwise every bit on the path was set before the harvest took it, so the harvest reaches
/// the word after the word bit was set and takes it.</para>
/// </remarks>
public sealed unsafe partial class SparseDirtyBitmap : IDisposable
{
    private readonly int _pageShift;
    private readonly int _addressWidth;
    private readonly ulong _pageCount;
    private readonly int _height;
    private readonly ulong _rootSpan;
    private TreeNode* _root;
    private long _bytesInUse;

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

        _pageShift = pageShift;
        _addressWidth = addressWidth;
        int pageBits = addressWidth - pageShift;
        _pageCount = 1UL << pageBits;
        _height = Math.Max(1, (pageBits - LeafPageShift + NodeFanoutShift - 1) / NodeFanoutShift);
        _rootSpan = 1UL << (LeafPageShift + (NodeFanoutShift * _height));
        _root = (TreeNode*)AllocateChild(_height);
    }

    /// <summary>Finalizer: releases the native memory of a bitmap that was not disposed.</summary>
    ~SparseDirtyBitmap() => Release();

    /// <summary>Bytes per page.</summary>
    public long PageSize => 1L << _pageShift;

    /// <summary>log2 of <see cref="PageSize"/>: a byte address shifted right by this is a page number.</summary>
    public int PageShift => _pageShift;

    /// <summary>Bits of the byte address space covered.</summary>
    public int AddressWidth => _addressWidth;

    /// <summary>The number of pages in the page space; valid page numbers are below it.</summary>
    public ulong PageCount => _pageCount;

    /// <summary>Bytes of native memory held by the tree (nodes and leaves), as requested from the allocator.</summary>
    /// <remarks>Grows as new regions are marked; never shrinks before disposal. Safe to read at any time.</remarks>
    public long BytesInUse => Volatile.Read(ref _bytesInUse);

    /// <summary>Frees the native memory. Must not race any other call on this bitmap.</summary>
    public void Dispose()
    {
        Release();
        GC.SuppressFinalize(this);
    }

    private void Release()
    {
        TreeNode* root = _root;
        if (root == null)
        {
            return;
        }

        _root = null;
        FreeSubtree(root, _height);
    }

    private TreeNode* Root
    {
        get
        {
            TreeNode* root = _root;
            if (root == null)
            {
                ThrowHelper.ThrowObjectDisposed(this);
            }

            return root;
        }
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
