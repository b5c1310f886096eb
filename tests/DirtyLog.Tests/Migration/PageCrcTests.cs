// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO.Hashing;
using DirtyLog.Migration;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// Both ends of the page stream take each page's CRC-32C from <c>Crc32C</c>, by folding (16 or 64 bytes an instruction,
/// as the CPU allows) or one lane: each path must give the value of the CRC-32C everyone else computes (System.IO.Hashing's)
/// for every length and every starting register, or a source and a destination on different CPUs disagree.
/// </summary>
[TestFixture]
public class PageCrcTests
{
    [TestCase(4096)]
    [TestCase(65536)]
    [TestCase(2 << 20)]
    public void EveryPathGivesTheCrcOfTheLibrary(int pageSize)
    {
        var random = new Random(pageSize);
        var page = new byte[pageSize];
        for (int i = 0; i < 20; i++)
        {
            random.NextBytes(page);
            if (i == 0)
            {
                Array.Clear(page); // the zero page's CRC, which the destination assumes for pages never sent
            }

            uint library = ~Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, page);
            Assert.That(Crc32C.OneLane(~0u, page), Is.EqualTo(library), $"page {i}, one lane");
            if (Crc32C.Folds)
            {
                Assert.That(Crc32C.Fold(~0u, page), Is.EqualTo(library), $"page {i}, folding 16 bytes");
            }

            if (Crc32C.FoldsWide)
            {
                Assert.That(Crc32C.FoldWide(~0u, page), Is.EqualTo(library), $"page {i}, folding 64 bytes");
            }

            Assert.That(PageStreamFormat.PageCrc(page), Is.EqualTo(library), $"page {i}");
        }
    }

    /// <summary>Every length up to 1,100 bytes (each side of 16, 64 and 256 and their multiples), longer odd ones, any register, unaligned starts.</summary>
    [Test]
    public void EveryLengthAndStartingRegisterGivesTheOneLaneValue([Values(1, 2, 3)] int seed)
    {
        var random = new Random(seed);
        var data = new byte[70_000];
        random.NextBytes(data);
        var lengths = new System.Collections.Generic.List<int>();
        for (int length = 0; length <= 1100; length++)
        {
            lengths.Add(length);
        }

        lengths.AddRange([4095, 4096, 4097, 8191, 65_535, 65_536, 69_990]);
        foreach (int length in lengths)
        {
            uint start = (uint)random.NextInt64(0, 1L << 32);
            int offset = random.Next(0, 8);
            ReadOnlySpan<byte> span = data.AsSpan(offset, length);
            uint expected = Crc32C.OneLane(start, span);
            Assert.That(Crc32C.Append(start, span), Is.EqualTo(expected), $"{length} bytes from 0x{start:x8} at offset {offset}");
            if (Crc32C.Folds && length >= 64)
            {
                Assert.That(Crc32C.Fold(start, span), Is.EqualTo(expected), $"{length} bytes folded 16 at a time");
            }

            if (Crc32C.FoldsWide && length >= 256)
            {
                Assert.That(Crc32C.FoldWide(start, span), Is.EqualTo(expected), $"{length} bytes folded 64 at a time");
            }
        }

        Assert.That(Crc32C.OneLane(~0u, "123456789"u8) ^ ~0u, Is.EqualTo(0xE3069283u), "the CRC-32C check value");
    }

    /// <summary>A page split anywhere (as the destination meets one across buffers) gives the whole page's CRC when continued.</summary>
    [Test]
    public void APageContinuedAcrossASplitGivesTheWholePagesCrc()
    {
        var random = new Random(4);
        var page = new byte[4096];
        random.NextBytes(page);
        uint whole = PageStreamFormat.PageCrc(page);
        for (int split = 0; split <= page.Length; split += 97)
        {
            uint continued = PageStreamFormat.Crc(PageStreamFormat.Crc(~0u, page.AsSpan(0, split)), page.AsSpan(split));
            Assert.That(continued, Is.EqualTo(whole), $"split at {split}");
        }
    }
}
