// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>
/// Pages spread evenly over a slot, as the kernel-cost probes write them: a fraction of the pages, one every
/// <see cref="Stride"/>, starting at a rotating offset so that successive rounds do not write the same pages.
/// </summary>
internal sealed class EvenSpread
{
    private readonly ulong _firstAllowed;
    private ulong _rotation;

    /// <param name="pages">Pages in the slot.</param>
    /// <param name="firstAllowed">The lowest page that may be written (the tiny guest's code sits below 2).</param>
    /// <param name="percent">The fraction dirty, in percent of the whole slot.</param>
    public EvenSpread(ulong pages, ulong firstAllowed, double percent)
    {
        _firstAllowed = firstAllowed;
        ulong usable = pages - firstAllowed;
        Count = (uint)Math.Clamp((ulong)(pages * percent / 100), 1, usable);
        Stride = Math.Max(1, usable / Count);
    }

    /// <summary>Pages per round.</summary>
    public uint Count { get; }

    /// <summary>Pages between two written pages.</summary>
    public ulong Stride { get; }

    /// <summary>The first page of the next round.</summary>
    public ulong NextFirst() => _firstAllowed + (_rotation++ % Stride);
}
