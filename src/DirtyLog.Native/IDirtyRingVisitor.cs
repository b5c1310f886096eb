// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native;

/// <summary>Receives the entries of a dirty ring harvest; as a struct type argument its calls are inlined, no delegate per entry.</summary>
/// <remarks>Thread safety: called on the harvesting thread, one entry at a time, while that thread holds the ring; an implementation used by one harvest at a time needs no synchronisation.</remarks>
public interface IDirtyRingVisitor
{
    /// <summary>One harvested entry.</summary>
    /// <param name="slot">The entry's slot field: address space id in the upper 16 bits, slot id in the lower.</param>
    /// <param name="offset">The page's offset in the slot.</param>
    void Visit(uint slot, ulong offset);
}
