// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Numerics;
using System.Runtime.InteropServices;

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>Streams a buffer twice the size of the 32 MiB L3 so that a harvest starts with cold caches, as in research/peers.md.</summary>
internal static class CacheEvictor
{
    private static readonly ulong[] s_buffer = new ulong[128L * 1024 * 1024 / 8];

    public static ulong Evict()
    {
        Span<Vector<ulong>> vectors = MemoryMarshal.Cast<ulong, Vector<ulong>>(s_buffer.AsSpan());
        Vector<ulong> sum = default;
        for (int i = 0; i < vectors.Length; i++)
        {
            vectors[i] += Vector<ulong>.One;
            sum += vectors[i];
        }

        return Vector.Sum(sum);
    }
}
