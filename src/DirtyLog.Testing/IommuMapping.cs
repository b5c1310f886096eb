// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Testing;

/// <summary>One IOAS_MAP of the emulated IOMMU (the kernel's "area"): unmaps must remove whole areas.</summary>
internal readonly record struct IommuMapping(ulong Iova, ulong GuestAddress, ulong Length, ulong MaxEntrySize)
{
    public ulong End => Iova + Length;
}
