// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.InteropServices;

namespace DirtyLog.Native;

/// <summary>One region PAGEMAP_SCAN reports: pages [<see cref="Start"/>, <see cref="End"/>) sharing <see cref="Categories"/> (layout of <c>struct page_region</c>).</summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
[StructLayout(LayoutKind.Sequential)]
public readonly struct PageRegion
{
    private readonly ulong _start;
    private readonly ulong _end;
    private readonly ulong _categories;

    /// <summary>Creates a region (for implementations of a scan other than the kernel's: an emulator).</summary>
    /// <param name="start">The first byte.</param>
    /// <param name="end">The byte past the region.</param>
    /// <param name="categories">The page categories.</param>
    public PageRegion(ulong start, ulong end, ulong categories)
    {
        _start = start;
        _end = end;
        _categories = categories;
    }

    /// <summary>The first byte.</summary>
    public ulong Start => _start;

    /// <summary>The byte past the region.</summary>
    public ulong End => _end;

    /// <summary>The page categories masked by the scan's return mask (<c>PAGE_IS_WRITTEN</c> = 2).</summary>
    public ulong Categories => _categories;
}
