// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using NUnit.Framework;

namespace DirtyLog.Tests.Harvesting;

/// <summary>Attribution of a round's pages: exclusive per tracker, and seen by several, from the runs' edges.</summary>
[TestFixture]
public class RoundAttributionTests
{
    [Test]
    public void OverlapsCountOnceForSeveralAndTheRestForTheirOnlyReporter()
    {
        IReadOnlyList<DirtyRun>?[] runs =
        [
            [new DirtyRun(0, 10), new DirtyRun(100, 5)],  // pages 0-9, 100-104
            [new DirtyRun(5, 10)],                        // pages 5-14: 5-9 shared with tracker 0
            [new DirtyRun(7, 1), new DirtyRun(15, 5)],    // page 7 shared by three; 15-19 touch tracker 1's end only
            null,                                         // did not read this round
        ];
        var exclusive = new ulong[4];
        ulong several = RoundAttribution.Compute(runs, exclusive);
        Assert.Multiple(() =>
        {
            Assert.That(several, Is.EqualTo(5UL), "pages 5 to 9");
            Assert.That(exclusive, Is.EqualTo(new ulong[] { 5 + 5, 5, 5, 0 }));
        });
    }

    [Test]
    public void NoRunsMeanNothingToAttribute()
    {
        var exclusive = new ulong[] { 9, 9 };
        Assert.That(RoundAttribution.Compute([[], null], exclusive), Is.Zero);
        Assert.That(exclusive, Is.EqualTo(new ulong[] { 0, 0 }));
    }
}
