// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Native;

namespace DirtyLog.Tracking.Ports;

/// <summary>
/// Write tracking of this process's own memory, as <see cref="UserfaultfdTracker"/> uses it: userfaultfd asynchronous
/// write-protect to arm ranges, <c>PAGEMAP_SCAN</c> to find (and re-arm) the pages written since.
/// </summary>
/// <remarks>
/// The rules every implementation keeps, as the kernel does: arming protects every page (a clean epoch); a write to a
/// protected page is let through and the page counts as written; a scan reports written pages as regions in address
/// order, merging neighbours, and with re-protection protects exactly what it reports; a scan whose region buffer fills
/// (or that meets something it must split) stops early and says where (<c>walk_end</c>); the caller scans again from
/// there. Implemented by <see cref="UserfaultfdWriteProtectPort"/> over the kernel and by the emulator of the
/// DirtyLog.Testing package. Thread safety: the tracker serialises its calls; a port shared by several trackers must be
/// thread-safe.
/// </remarks>
public interface IWriteProtectPort
{
    /// <summary>A name for diagnostics.</summary>
    string Name { get; }

    /// <summary>Registers and write-protects the ranges: from now on writes to them are tracked.</summary>
    /// <param name="ranges">Page-aligned host ranges (address, bytes).</param>
    void Arm(IReadOnlyList<(nint Start, ulong Length)> ranges);

    /// <summary>Stops tracking every range (closes what <see cref="Arm"/> opened). Safe to repeat.</summary>
    void Disarm();

    /// <summary>Reports the written pages of [<paramref name="start"/>, <paramref name="limit"/>), and re-protects them with <paramref name="reprotect"/>.</summary>
    /// <param name="start">Page-aligned start.</param>
    /// <param name="limit">The end (exclusive).</param>
    /// <param name="regions">The output buffer; when it fills, the walk stops early.</param>
    /// <param name="reprotect">Whether to re-protect what is reported (a read-and-clear).</param>
    /// <param name="walkEnd">Where the walk stopped: <paramref name="limit"/> when complete.</param>
    /// <returns>The number of regions filled.</returns>
    int ScanWritten(ulong start, ulong limit, Span<PageRegion> regions, bool reprotect, out ulong walkEnd);
}
