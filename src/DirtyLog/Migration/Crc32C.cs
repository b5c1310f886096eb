// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace DirtyLog.Migration;

/// <summary>
/// CRC-32C (Castagnoli, reflected; the raw register: the caller starts and ends it as its format says) by folding with
/// carry-less multiplication where the CPU has it. The CRC instruction takes eight bytes a step but each step waits for
/// the last (one lane: about 2.8 bytes a cycle on the development machine, where a second and third lane gained
/// nothing); folding keeps four independent accumulators of 16 bytes (or of 64, with 512-bit vectors) and moves each
/// forward by multiplying by x^distance modulo the polynomial, then joins them the same way. The last 16 bytes of
/// accumulator are a message with the whole message's CRC, which the CRC instruction finishes. Both ends of the page
/// stream compute a CRC of every page they carry: this is its cost (the page CRC benchmark compares the three paths
/// and System.IO.Hashing, whose code runs unoptimised for the first few hundred MiB under the JIT).
/// Thread safety: stateless; the constants are made once and only read.
/// </summary>
internal static class Crc32C
{
    /// <summary>The polynomial in normal form, x^32 implied.</summary>
    private const ulong Polynomial = 0x1_1EDC_6F41;

    private static readonly Vector128<ulong> s_fold128 = FoldConstants(128);
    private static readonly Vector128<ulong> s_fold256 = FoldConstants(256);
    private static readonly Vector128<ulong> s_fold384 = FoldConstants(384);
    private static readonly Vector128<ulong> s_fold512 = FoldConstants(512);
    private static readonly Vector128<ulong> s_fold2048 = FoldConstants(2048);

    /// <summary>Whether this CPU folds 64 bytes an instruction (VPCLMULQDQ on 512-bit vectors).</summary>
    public static bool FoldsWide => Pclmulqdq.V512.IsSupported && Vector512.IsHardwareAccelerated;

    /// <summary>Whether this CPU folds 16 bytes an instruction (PCLMULQDQ).</summary>
    public static bool Folds => Pclmulqdq.IsSupported;

    /// <summary>The register <paramref name="crc"/> run over <paramref name="data"/>.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        if (FoldsWide && data.Length >= 256)
        {
            return FoldWide(crc, data);
        }

        if (Folds && data.Length >= 64)
        {
            return Fold(crc, data);
        }

        return OneLane(crc, data);
    }

    /// <summary>Eight bytes a step with the CRC instruction, then the bytes left one by one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a first round ends before tiering would promote it
    public static uint OneLane(uint crc, ReadOnlySpan<byte> data)
    {
        ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(data);
        foreach (ulong word in words)
        {
            crc = BitOperations.Crc32C(crc, word);
        }

        foreach (byte b in data[(words.Length * sizeof(ulong))..])
        {
            crc = BitOperations.Crc32C(crc, b);
        }

        return crc;
    }

    /// <summary>Four accumulators of 16 bytes (64 bytes a step); at least 64 bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static uint Fold(uint crc, ReadOnlySpan<byte> data)
    {
        ref byte start = ref MemoryMarshal.GetReference(data);
        nuint length = (nuint)data.Length, offset = 64;
        Vector128<ulong> x0 = Load128(ref start, 0) ^ Vector128.CreateScalar((ulong)crc); // the register joins the first bytes
        Vector128<ulong> x1 = Load128(ref start, 16), x2 = Load128(ref start, 32), x3 = Load128(ref start, 48);
        Vector128<ulong> k = s_fold512;
        for (; length - offset >= 64; offset += 64)
        {
            x0 = Fold128(x0, k) ^ Load128(ref start, offset);
            x1 = Fold128(x1, k) ^ Load128(ref start, offset + 16);
            x2 = Fold128(x2, k) ^ Load128(ref start, offset + 32);
            x3 = Fold128(x3, k) ^ Load128(ref start, offset + 48);
        }

        k = s_fold128;
        x1 ^= Fold128(x0, k);
        x2 ^= Fold128(x1, k);
        x3 ^= Fold128(x2, k);
        return Finish(x3, ref start, offset, length);
    }

    /// <summary>Four accumulators of 64 bytes (256 bytes a step); at least 256 bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static uint FoldWide(uint crc, ReadOnlySpan<byte> data)
    {
        ref byte start = ref MemoryMarshal.GetReference(data);
        nuint length = (nuint)data.Length, offset = 256;
        Vector512<ulong> x0 = Load512(ref start, 0) ^ Vector512.CreateScalar((ulong)crc);
        Vector512<ulong> x1 = Load512(ref start, 64), x2 = Load512(ref start, 128), x3 = Load512(ref start, 192);
        Vector512<ulong> k = Broadcast(s_fold2048);
        for (; length - offset >= 256; offset += 256)
        {
            x0 = Fold512(x0, k) ^ Load512(ref start, offset);
            x1 = Fold512(x1, k) ^ Load512(ref start, offset + 64);
            x2 = Fold512(x2, k) ^ Load512(ref start, offset + 128);
            x3 = Fold512(x3, k) ^ Load512(ref start, offset + 192);
        }

        k = Broadcast(s_fold512);
        x1 ^= Fold512(x0, k);
        x2 ^= Fold512(x1, k);
        x3 ^= Fold512(x2, k);
        for (; length - offset >= 64; offset += 64)
        {
            x3 = Fold512(x3, k) ^ Load512(ref start, offset);
        }

        // The accumulator's four 16-byte lanes, the first 48 bytes before the last.
        Vector256<ulong> low = x3.GetLower(), high = x3.GetUpper();
        Vector128<ulong> x = Fold128(low.GetLower(), s_fold384) ^ Fold128(low.GetUpper(), s_fold256) ^ Fold128(high.GetLower(), s_fold128) ^ high.GetUpper();
        return Finish(x, ref start, offset, length);
    }

    /// <summary>The 16-byte steps left, the CRC of the accumulator, then the last bytes one lane.</summary>
    private static uint Finish(Vector128<ulong> x, ref byte start, nuint offset, nuint length)
    {
        for (; length - offset >= 16; offset += 16)
        {
            x = Fold128(x, s_fold128) ^ Load128(ref start, offset);
        }

        uint crc = BitOperations.Crc32C(BitOperations.Crc32C(0, x.GetElement(0)), x.GetElement(1));
        return OneLane(crc, MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref start, offset), (int)(length - offset)));
    }

    /// <summary>An accumulator moved forward by the distance its constants were made for.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Fold128(Vector128<ulong> x, Vector128<ulong> k) =>
        Pclmulqdq.CarrylessMultiply(x, k, 0x00) ^ Pclmulqdq.CarrylessMultiply(x, k, 0x11);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Fold512(Vector512<ulong> x, Vector512<ulong> k) =>
        Pclmulqdq.V512.CarrylessMultiply(x, k, 0x00) ^ Pclmulqdq.V512.CarrylessMultiply(x, k, 0x11);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Load128(ref byte start, nuint offset) => Vector128.LoadUnsafe(ref start, offset).AsUInt64();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Load512(ref byte start, nuint offset) => Vector512.LoadUnsafe(ref start, offset).AsUInt64();

    private static Vector512<ulong> Broadcast(Vector128<ulong> k) => Vector512.Create(Vector256.Create(k, k), Vector256.Create(k, k));

    /// <summary>
    /// The multipliers that move 16 bytes of accumulator <paramref name="bits"/> forward: its first eight bytes (the
    /// higher powers, reflected) by x^(bits + 32), its last eight by x^(bits - 32), each reduced modulo the polynomial
    /// and reflected into 33 bits (the one bit more makes up for the product of two reflected numbers landing one bit low).
    /// </summary>
    private static Vector128<ulong> FoldConstants(int bits) => Vector128.Create(Reflect33(PowerOfX(bits + 32)), Reflect33(PowerOfX(bits - 32)));

    /// <summary>x^<paramref name="power"/> modulo the polynomial, normal form.</summary>
    private static ulong PowerOfX(int power)
    {
        ulong r = 1;
        for (int i = 0; i < power; i++)
        {
            r <<= 1;
            if ((r & (1UL << 32)) != 0)
            {
                r ^= Polynomial;
            }
        }

        return r;
    }

    private static ulong Reflect33(ulong value) => (ulong)BitReverse32((uint)value) << 1;

    private static uint BitReverse32(uint v)
    {
        uint r = 0;
        for (int i = 0; i < 32; i++)
        {
            r = (r << 1) | ((v >> i) & 1);
        }

        return r;
    }
}
