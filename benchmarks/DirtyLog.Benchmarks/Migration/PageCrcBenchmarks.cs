// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO.Hashing;
using System.Numerics;
using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace DirtyLog.Benchmarks.Migration;

/// <summary>
/// Each page's CRC-32C, as both ends of the page stream compute it: 80 MiB in 4 KiB pages, the one-lane loop over
/// <see cref="BitOperations.Crc32C(uint, ulong)"/> (eight bytes a step) against the library's folding with carry-less
/// multiplication, 16 and 64 bytes an instruction (<c>Crc32C</c>; the stream takes the wider where the CPU has it), and
/// System.IO.Hashing's CRC-32C, in the same run.
/// BenchmarkDotNet measures both once optimised; the performance guide says what the first call costs under the JIT and AOT.
/// </summary>
public class PageCrcBenchmarks
{
    private const int PageSize = 4096;
    private byte[] _pages = [];

    [GlobalSetup]
    public void Setup()
    {
        _pages = new byte[80 << 20];
        new Random(1).NextBytes(_pages);
    }

    [Benchmark(Baseline = true)]
    public uint BitOperationsLoop()
    {
        uint digest = 0;
        for (int offset = 0; offset < _pages.Length; offset += PageSize)
        {
            uint crc = ~0u;
            foreach (ulong word in MemoryMarshal.Cast<byte, ulong>(_pages.AsSpan(offset, PageSize)))
            {
                crc = BitOperations.Crc32C(crc, word);
            }

            digest ^= crc;
        }

        return digest;
    }

    /// <summary>Folding 16 bytes an instruction (PCLMULQDQ), four accumulators.</summary>
    [Benchmark]
    public uint Fold() => EachPage(static page => DirtyLog.Migration.Crc32C.Fold(~0u, page));

    /// <summary>Folding 64 bytes an instruction (VPCLMULQDQ on 512-bit vectors), four accumulators: what the stream uses where the CPU has it.</summary>
    [Benchmark]
    public uint FoldWide() => DirtyLog.Migration.Crc32C.FoldsWide ? EachPage(static page => DirtyLog.Migration.Crc32C.FoldWide(~0u, page)) : 0;

    [Benchmark]
    public uint SystemIoHashing() => EachPage(static page => ~Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, page));

    private uint EachPage(PageCrc crc)
    {
        uint digest = 0;
        for (int offset = 0; offset < _pages.Length; offset += PageSize)
        {
            digest ^= crc(_pages.AsSpan(offset, PageSize));
        }

        return digest;
    }

    private delegate uint PageCrc(ReadOnlySpan<byte> page);
}
