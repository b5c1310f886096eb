// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Tracking;

namespace DirtyLog.Mapping;

/// <summary>Guest-physical ranges to this process's memory, through the VMM's regions: checked once, split per region.</summary>
internal static class GuestTranslation
{
    /// <summary>The regions sorted by guest address, after checking each is page-aligned, non-empty and overlaps none.</summary>
    public static HostMemoryRegion[] Check(IEnumerable<HostMemoryRegion> regions, string paramName)
    {
        HostMemoryRegion[] sorted = [.. regions.OrderBy(r => r.GuestAddress)];
        for (int i = 0; i < sorted.Length; i++)
        {
            HostMemoryRegion r = sorted[i];
            if (r.Length == 0 || ((r.GuestAddress | r.Length | (ulong)r.HostAddress) & 4095) != 0 || r.GuestAddress + r.Length < r.GuestAddress)
            {
                throw new ArgumentException($"The region of 0x{r.Length:x} bytes at guest 0x{r.GuestAddress:x} is empty, unaligned or wraps.", paramName);
            }

            if (i > 0 && sorted[i - 1].GuestAddress + sorted[i - 1].Length > r.GuestAddress)
            {
                throw new ArgumentException($"The regions at guest 0x{sorted[i - 1].GuestAddress:x} and 0x{r.GuestAddress:x} overlap.", paramName);
            }
        }

        return sorted;
    }

    /// <summary>The host pieces of [<paramref name="guestAddress"/>, + <paramref name="length"/>), in guest order.</summary>
    /// <exception cref="ArgumentException">Part of the range is in no region.</exception>
    public static List<(nint Host, ulong Length)> Split(HostMemoryRegion[] sorted, ulong guestAddress, ulong length)
    {
        if (length == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), "An empty range maps nothing.");
        }

        var pieces = new List<(nint, ulong)>();
        ulong at = guestAddress, end = guestAddress + length;
        foreach (HostMemoryRegion r in sorted)
        {
            if (at >= end)
            {
                break;
            }

            if (r.GuestAddress + r.Length <= at)
            {
                continue;
            }

            if (r.GuestAddress > at)
            {
                break; // a hole
            }

            ulong piece = Math.Min(end, r.GuestAddress + r.Length) - at;
            pieces.Add((r.HostAddress + (nint)(at - r.GuestAddress), piece));
            at += piece;
        }

        if (at < end)
        {
            throw new ArgumentException($"Guest range [0x{guestAddress:x} +0x{length:x}) is not wholly backed by guest memory (from 0x{at:x}).", nameof(guestAddress));
        }

        return pieces;
    }
}
