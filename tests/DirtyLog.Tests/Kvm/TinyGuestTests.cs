// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using DirtyLog.Native;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm;

/// <summary>The tiny guest on the real /dev/kvm: what it writes is exactly what the host-side replay of its generator says.</summary>
[TestFixture]
public class TinyGuestTests : KvmFixture
{
    [TestCase(1u, 1u)]
    [TestCase(7u, 1000u)]
    [TestCase(99u, 20000u)]
    public void TheGuestWritesTheIterationIntoExactlyTheReplayedPages(uint seed, uint writes)
    {
        using var guest = new TinyGuest(64UL << 20, seed);
        uint state = guest.State;
        guest.Write(writes, 0x1_0000_0000UL + 3);
        var expected = new HashSet<ulong>(TinyGuest.PagesWrittenBy(state, writes, guest.Pages));
        int mismatches = 0;
        for (ulong page = 2; page < guest.Pages; page++)
        {
            bool written = guest.Memory.ReadUInt64(page * 4096) == 0x1_0000_0000UL + 3;
            if (written != expected.Contains(page))
            {
                mismatches++;
            }
        }

        Assert.Multiple(() =>
        {
            Assert.That(mismatches, Is.Zero);
            Assert.That(guest.State, Is.Not.EqualTo(state), "the generator state moved on");
            Assert.That(guest.Memory.ReadUInt64(TinyGuest.CodeAddress), Is.Not.Zero, "the code page was not overwritten");
        });
    }

    [Test]
    public void SuccessiveRunsContinueTheSequence()
    {
        using var guest = new TinyGuest(64UL << 20, seed: 5);
        uint start = guest.State;
        guest.Write(100, 1);
        guest.Write(100, 2);
        ulong[] all = TinyGuest.PagesWrittenBy(start, 200, guest.Pages);
        Assert.That(guest.Memory.ReadUInt64(all[199] * 4096), Is.EqualTo(2UL));
    }
}
