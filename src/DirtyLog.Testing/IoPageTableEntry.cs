// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Testing;

/// <summary>One IOPTE of an emulated HWPT: a 4 KiB, 2 MiB or 1 GiB translation and its dirty bit.</summary>
internal sealed class IoPageTableEntry
{
    public IoPageTableEntry(ulong iova, ulong size, ulong guestAddress)
    {
        Iova = iova;
        Size = size;
        GuestAddress = guestAddress;
    }

    public ulong Iova { get; }

    public ulong Size { get; }

    public ulong GuestAddress { get; }

    /// <summary>1 when DMA wrote through the entry since the last clear; set by DMA and taken by reads atomically.</summary>
    public int Dirty;
}
