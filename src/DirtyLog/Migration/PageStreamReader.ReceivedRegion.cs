// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Tracking;

namespace DirtyLog.Migration;

public sealed partial class PageStreamReader
{
    /// <summary>
    /// A region of the source's memory as received: its pages' CRCs as applied (the memory digest's input), and with
    /// <see cref="MemoryStartsZeroed"/> a bit per page this reader may have left non-zero. Its pages are written to
    /// <see cref="Target"/>, the destination region that holds it.
    /// </summary>
    private sealed class ReceivedRegion(ulong firstPage, ulong pageCount, HostMemoryRegion target, bool trackWritten)
    {
        public ulong FirstPage { get; } = firstPage;

        public ulong PageCount { get; } = pageCount;

        public HostMemoryRegion Target { get; } = target;

        public uint[] Crcs { get; } = new uint[pageCount];

        public ulong[] Written { get; } = trackWritten ? new ulong[(pageCount + 63) / 64] : [];

        /// <summary>Pages [<paramref name="first"/>, + <paramref name="count"/>) of the region were written with data.</summary>
        public void MarkWritten(ulong first, uint count)
        {
            for (ulong p = first; p < first + count; p++)
            {
                Written[p >> 6] |= 1UL << (int)(p & 63);
            }
        }
    }
}
