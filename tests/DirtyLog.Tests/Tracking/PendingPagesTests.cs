// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Tracking;

/// <summary>The ring tracker's per-slot pending pages against a set model: takes at any offset move exactly the marked pages once.</summary>
[TestFixture]
public class PendingPagesTests
{
    [TestCase(1, 100_000UL)]
    [TestCase(2, 262_144UL)]
    [TestCase(3, 4_097UL)]
    public void TakesOfRandomRangesMoveEachMarkedPageExactlyOnce(int seed, ulong pages)
    {
        var random = new Random(seed);
        var pending = new PendingPages(firstPage: 1000, pages);
        var model = new HashSet<ulong>();
        var buffer = new ulong[(pages + 63) / 64];
        for (int round = 0; round < 200; round++)
        {
            int marks = random.Next(0, 300);
            for (int i = 0; i < marks; i++)
            {
                // Clusters and single pages, near word and group edges too.
                ulong page = (ulong)random.NextInt64((long)pages);
                pending.Mark(page);
                model.Add(page);
            }

            ulong from = (ulong)random.NextInt64((long)pages);
            ulong count = (ulong)random.NextInt64((long)(pages - from) + 1);
            bool any = pending.Take(from, count, buffer);
            var taken = new HashSet<ulong>();
            for (ulong bit = 0; bit < count; bit++)
            {
                if ((buffer[bit / 64] & (1UL << (int)(bit % 64))) != 0)
                {
                    taken.Add(from + bit);
                }
            }

            var expected = new HashSet<ulong>(model);
            expected.RemoveWhere(p => p < from || p >= from + count);
            Assert.That(taken, Is.EquivalentTo(expected), $"round {round}: take [{from}, {from + count})");
            Assert.That(any, Is.EqualTo(expected.Count > 0));
            model.ExceptWith(expected);
        }

        Assert.That(pending.Take(0, pages, buffer), Is.EqualTo(model.Count > 0));
        Assert.That(pending.IsEmpty, Is.True);
    }

    [Test]
    public void MarkAllMarksExactlyTheSlot()
    {
        var pending = new PendingPages(0, 130);
        pending.MarkAll();
        var buffer = new ulong[4];
        Assert.That(pending.Take(0, 130, buffer), Is.True);
        Assert.That(buffer[..3], Is.EqualTo(new[] { ~0UL, ~0UL, 3UL }));
        Assert.That(pending.IsEmpty, Is.True);
    }
}
