// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.Versioning;
using DirtyLog.Native.Linux.Userfaultfd;
using static DirtyLog.Native.Linux.Userfaultfd.PagemapConstants;

namespace DirtyLog.Native;

/// <summary><c>PAGEMAP_SCAN</c> on <c>/proc/self/pagemap</c>: which pages of this process were written since they were last write-protected.</summary>
/// <remarks>Thread safety: not thread-safe: one thread scans at a time (the scanner owns its region buffer); different scanners may scan at once, the kernel serialises them per page table.</remarks>
[SupportedOSPlatform("linux")]
public sealed unsafe class PagemapScanner : IDisposable
{
    private PagemapScanner(FileDescriptorHandle handle) => Handle = handle;

    /// <summary>The pagemap descriptor.</summary>
    public FileDescriptorHandle Handle { get; }

    /// <summary>Opens this process's pagemap (read-only is enough).</summary>
    /// <returns>The scanner.</returns>
    public static PagemapScanner OpenSelf() => new(FileDescriptorHandle.Open("/proc/self/pagemap", Interop.O_RDONLY));

    /// <summary>
    /// Reports the written pages of [<paramref name="start"/>, <paramref name="end"/>) as regions and, with
    /// <paramref name="reprotect"/>, write-protects them again atomically (<c>PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC</c>).
    /// </summary>
    /// <param name="start">Page-aligned start.</param>
    /// <param name="end">End (exclusive).</param>
    /// <param name="regions">The output buffer; when it fills, the walk stops early.</param>
    /// <param name="reprotect">Re-arm what is reported (a read-and-clear); otherwise only look.</param>
    /// <param name="walkEnd">Where the walk stopped: <paramref name="end"/> when complete; call again from it otherwise.</param>
    /// <returns>The number of regions filled.</returns>
    public int ScanWritten(ulong start, ulong end, Span<PageRegion> regions, bool reprotect, out ulong walkEnd)
    {
        fixed (PageRegion* vec = regions)
        {
            var arg = new pm_scan_arg
            {
                size = (ulong)sizeof(pm_scan_arg),
                flags = reprotect ? PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC : 0,
                start = start,
                end = end,
                vec = (ulong)vec,
                vec_len = (ulong)regions.Length,
                category_mask = PAGE_IS_WRITTEN,
                return_mask = PAGE_IS_WRITTEN,
            };
            int count = Handle.Ioctl(PAGEMAP_SCAN, nameof(PAGEMAP_SCAN), &arg);
            walkEnd = arg.walk_end;
            return count;
        }
    }

    /// <summary>Closes the pagemap.</summary>
    public void Dispose() => Handle.Dispose();
}
