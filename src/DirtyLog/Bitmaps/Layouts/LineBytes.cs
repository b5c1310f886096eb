// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>Reading the flat layout's summary bytes (each 0 or 1) as bit masks.</summary>
internal static unsafe class LineBytes
{
    /// <summary>Bit <c>i</c> set when byte <c>i</c> of the 64 at <paramref name="bytes"/> (64-byte aligned) is not zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong NonZero(byte* bytes)
    {
        uint low = Vector256.Equals(Vector256.LoadAligned(bytes), Vector256<byte>.Zero).ExtractMostSignificantBits();
        uint high = Vector256.Equals(Vector256.LoadAligned(bytes + 32), Vector256<byte>.Zero).ExtractMostSignificantBits();
        return ~(low | ((ulong)high << 32));
    }

    /// <summary>Bit <c>i</c> set when byte <c>i</c> of <paramref name="group"/> (8 bytes, each 0 or 1) is 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Flags(ulong group)
    {
        if (Bmi2.X64.IsSupported)
        {
            return Bmi2.X64.ParallelBitExtract(group, 0x0101010101010101);
        }

        ulong flags = 0;
        for (int i = 0; i < 8; i++)
        {
            flags |= ((group >> (8 * i)) & 1) << i;
        }

        return flags;
    }
}
