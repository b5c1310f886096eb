// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Tracking;

namespace DirtyLog.Migration;

public sealed partial class PageStreamReader
{
    /// <summary>
    /// A region of the source's memory as received: its pages' CRCs as applied (the memory digest's input), and with
    /// <see cref="MemoryStartsZeroed"/> a bit per page this reader may have left non-zero. Its pages are written to
    /// <see cref="Target"/>, the destination region that holds it.
    /// </summary>
    internal sealed class ReceivedRegion(ulong firstPage, ulong pageCount, HostMemoryRegion target, bool trackWritten)
    {
        public ulong FirstPage { get; } = firstPage;

        public ulong PageCount { get; } = pageCount;

        public HostMemoryRegion Target { get; } = target;

        public uint[] Crcs { get; } = new uint[pageCount];

        public ulong[] Written { get; } = trackWritten ? new ulong[(pageCount + 63) / 64] : [];

        /// <summary>
        /// Pages [<paramref name="first"/>, + <paramref name="count"/>) of the region were written with data. Atomic per
        /// word: data connections apply neighbouring pages of one word at once.
        /// </summary>
        public void MarkWritten(ulong first, uint count)
        {
            for (ulong p = first, end = first + count; p < end;)
            {
                int bit = (int)(p & 63);
                ulong bits = Math.Min(64 - (ulong)bit, end - p);
                ulong mask = (bits == 64 ? ulong.MaxValue : (1UL << (int)bits) - 1) << bit;
                Interlocked.Or(ref Written[p >> 6], mask);
                p += bits;
            }
        }

        /// <summary>Page <paramref name="page"/> of the region reads zero again (atomic, as <see cref="MarkWritten"/>).</summary>
        public void MarkZero(ulong page) => Interlocked.And(ref Written[page >> 6], ~(1UL << (int)(page & 63)));
    }
}
