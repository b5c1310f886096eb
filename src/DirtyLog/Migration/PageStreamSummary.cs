// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;

namespace DirtyLog.Migration;

/// <summary>What a complete page stream carried.</summary>
/// <remarks>Thread safety: an immutable snapshot (its states are a copy); safe to share between threads.</remarks>
/// <param name="DataPages">Pages applied from data records.</param>
/// <param name="ZeroPages">Pages applied as zero pages.</param>
/// <param name="Rounds">Rounds received.</param>
/// <param name="Bytes">Bytes read.</param>
public sealed record PageStreamSummary(ulong DataPages, ulong ZeroPages, long Rounds, long Bytes)
{
    /// <summary>Whether the source's memory digest was read (after the end) and the applied pages matched it.</summary>
    public bool MemoryVerified { get; init; }

    /// <summary>The state records, by name: what the VMM sent along with memory (vCPU registers, device state).</summary>
    public IReadOnlyDictionary<string, ReadOnlyMemory<byte>> States { get; init; } = new Dictionary<string, ReadOnlyMemory<byte>>();
}
