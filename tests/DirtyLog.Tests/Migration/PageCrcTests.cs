// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO.Hashing;
using DirtyLog.Migration;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// A page's CRC comes from System.IO.Hashing under Native AOT and from the BitOperations loop under the JIT (see
/// <c>PageStreamFormat.PageCrc</c>): both must give the format's value, or an AOT source and a JIT destination disagree.
/// </summary>
[TestFixture]
public class PageCrcTests
{
    [TestCase(4096)]
    [TestCase(65536)]
    [TestCase(2 << 20)]
    public void TheLibraryAndTheLoopGiveTheSamePageCrc(int pageSize)
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

            uint loop = PageStreamFormat.Crc(~0u, page);
            Assert.That(~Crc32.HashToUInt32(Crc32ParameterSet.Crc32C, page), Is.EqualTo(loop), $"page {i}");
            Assert.That(PageStreamFormat.PageCrc(page), Is.EqualTo(loop));
        }
    }
}
