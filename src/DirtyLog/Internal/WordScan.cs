// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DirtyLog.Internal;

/// <summary>SIMD tests of eight 64-bit words (one cache line) at a time.</summary>
internal static class WordScan
{
    /// <summary>Returns a mask with bit <c>i</c> set when word <c>i</c> of the 8 words at <paramref name="first"/> is not zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint NonZeroMask8(ref ulong first)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<ulong> v = Vector512.LoadUnsafe(ref first);
            return ~(uint)Vector512.Equals(v, Vector512<ulong>.Zero).ExtractMostSignificantBits() & 0xFF;
        }

        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<ulong> lo = Vector256.LoadUnsafe(ref first);
            Vector256<ulong> hi = Vector256.LoadUnsafe(ref first, 4);
            uint zero = Vector256.Equals(lo, Vector256<ulong>.Zero).ExtractMostSignificantBits()
                | (Vector256.Equals(hi, Vector256<ulong>.Zero).ExtractMostSignificantBits() << 4);
            return ~zero & 0xFF;
        }

        uint mask = 0;
        for (int i = 0; i < 8; i++)
        {
            if (Unsafe.Add(ref first, i) != 0)
            {
                mask |= 1u << i;
            }
        }

        return mask;
    }
}
