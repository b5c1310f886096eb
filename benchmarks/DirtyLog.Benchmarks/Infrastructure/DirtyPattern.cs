// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>The dirty patterns of research/peers.md, over a 1 TiB guest (2^28 pages of 4 KiB).</summary>
public enum DirtyPattern
{
    /// <summary>No dirty page.</summary>
    Clean,

    /// <summary>0.01% of pages, uniformly random.</summary>
    Random0_01,

    /// <summary>0.1% of pages, uniformly random.</summary>
    Random0_1,

    /// <summary>1% of pages, uniformly random.</summary>
    Random1,

    /// <summary>10% of pages, uniformly random.</summary>
    Random10,

    /// <summary>Every page.</summary>
    Full,

    /// <summary>1% of pages, in whole 2 MiB clusters (huge-page-like).</summary>
    Clustered1,
}

/// <summary>Builds a pattern as a kernel-format bitmap (bit i = page i).</summary>
internal static class DirtyPatterns
{
    public const int GuestPageBits = 28;
    public const ulong GuestPages = 1UL << GuestPageBits;

    public static ulong[] Build(DirtyPattern pattern, ulong seed = 42)
    {
        var words = new ulong[GuestPages / 64];
        var random = new XorShift(seed);
        switch (pattern)
        {
            case DirtyPattern.Clean:
                break;
            case DirtyPattern.Full:
                Array.Fill(words, ~0UL);
                break;
            case DirtyPattern.Clustered1:
                // 1% of the 2^19 clusters of 512 pages (8 words each), with duplicates allowed as in peers.md.
                for (int i = 0; i < (1 << 19) / 100; i++)
                {
                    Array.Fill(words, ~0UL, (int)(random.Below(1UL << 19) * 8), 8);
                }

                break;
            default:
                double fraction = pattern switch
                {
                    DirtyPattern.Random0_01 => 0.0001,
                    DirtyPattern.Random0_1 => 0.001,
                    DirtyPattern.Random1 => 0.01,
                    _ => 0.1,
                };
                for (ulong i = 0; i < (ulong)(GuestPages * fraction); i++)
                {
                    ulong page = random.Below(GuestPages);
                    words[page >> 6] |= 1UL << (int)(page & 63);
                }

                break;
        }

        return words;
    }
}
