// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration;

/// <summary>What a complete page stream carried.</summary>
/// <param name="DataPages">Pages applied from data records.</param>
/// <param name="ZeroPages">Pages applied as zero pages.</param>
/// <param name="Rounds">Rounds received.</param>
/// <param name="Bytes">Bytes read.</param>
public sealed record PageStreamSummary(ulong DataPages, ulong ZeroPages, long Rounds, long Bytes)
{
    /// <summary>Whether the stream carried the source's memory digest and the destination's memory matched it.</summary>
    public bool MemoryVerified { get; init; }
}
