// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Native.Internal;
using DirtyLog.Native.Linux.Kvm;
using NUnit.Framework;
using static DirtyLog.Native.Linux.Kvm.KvmConstants;

namespace DirtyLog.Tests.Native;

/// <summary>
/// User space's side of a dirty ring against a pusher thread that keeps <c>kvm_dirty_ring_push</c>'s rules (push at
/// the dirty index, release store of the flags, overwrite when full) and a reset that keeps
/// <c>kvm_dirty_ring_reset</c>'s: after a seeded overflow of a lap and k entries, the harvest must find its way back
/// while the pusher goes on pushing, and every entry pushed after the overflow must be harvested. Judged from the
/// entries' own sequence numbers.
/// </summary>
[TestFixture]
[Category("Unit")]
public unsafe class DirtyRingCursorTests
{
    private const uint Size = 1024;
    private const uint SoftLimit = Size - 64 - 256;

    /// <summary>The kernel's side: the pusher's dirty index and the reset's index, over one pinned ring.</summary>
    private sealed class KernelRing
    {
        public readonly kvm_dirty_gfn[] Entries = GC.AllocateArray<kvm_dirty_gfn>((int)Size, pinned: true);
        public uint DirtyIndex;
        public uint ResetIndex;

        public kvm_dirty_gfn* Base
        {
            get
            {
                fixed (kvm_dirty_gfn* p = Entries)
                {
                    return p;
                }
            }
        }

        public uint Used => Volatile.Read(ref DirtyIndex) - Volatile.Read(ref ResetIndex);

        public void Push(ulong sequence)
        {
            ref kvm_dirty_gfn entry = ref Entries[DirtyIndex & (Size - 1)];
            entry.slot = 0;
            entry.offset = sequence;
            Volatile.Write(ref entry.flags, KVM_DIRTY_GFN_F_DIRTY);
            Volatile.Write(ref DirtyIndex, DirtyIndex + 1);
        }

        public int Reset()
        {
            int count = 0;
            while (true)
            {
                ref kvm_dirty_gfn entry = ref Entries[ResetIndex & (Size - 1)];
                if ((Volatile.Read(ref entry.flags) & KVM_DIRTY_GFN_F_RESET) == 0)
                {
                    return count;
                }

                Volatile.Write(ref entry.flags, 0);
                Volatile.Write(ref ResetIndex, ResetIndex + 1);
                count++;
            }
        }
    }

    private struct Collector(HashSet<ulong> seen) : IDirtyRingVisitor
    {
        public void Visit(uint slot, ulong offset) => seen.Add(offset);
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public void AfterAnOverflowTheHarvestGetsBackInStepWhileThePusherRunsAndMissesNothingPushedAfterIt(int seed)
    {
        var random = new Random(seed);
        for (int trial = 0; trial < 100; trial++)
        {
            var ring = new KernelRing();
            var cursor = new DirtyRingCursor(ring.Base, Size);
            var seen = new HashSet<ulong>();
            var collector = new Collector(seen);

            // The overflow, with the harvester parked: a lap and k more, as one KVM_RUN that ignored the soft limit.
            uint k = (uint)random.Next(1, (int)SoftLimit - 8);
            ulong sequence = 0;
            for (uint i = 0; i < Size + k; i++)
            {
                ring.Push(sequence++);
            }

            Assert.That(cursor.Harvest(ref collector), Is.EqualTo((int)Size));
            ring.Reset();
            Assert.That(ring.Used, Is.EqualTo(k), "KVM counts k entries whose flags say recycled");
            ulong firstAfter = sequence;

            // Now both run: the pusher within the soft limit (as KVM does once it counts the ring full again), the
            // harvester harvesting, skipping and resetting, released together by a barrier.
            int pushes = random.Next(50, 3000);
            using var start = new Barrier(2);
            var pusher = new Thread(() =>
            {
                start.SignalAndWait();
                for (int i = 0; i < pushes; i++)
                {
                    SpinWait wait = default;
                    while (ring.Used >= SoftLimit)
                    {
                        wait.SpinOnce(); // the vCPU stays out of the guest until the reset frees entries
                    }

                    ring.Push(sequence + (ulong)i);
                }
            });
            pusher.Start();
            start.SignalAndWait();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (pusher.IsAlive || ring.Used != 0)
            {
                if (cursor.Harvest(ref collector) == 0)
                {
                    cursor.SkipRecycled();
                    cursor.Harvest(ref collector);
                }

                ring.Reset();
                Assert.That(DateTime.UtcNow, Is.LessThan(deadline),
                    () => $"trial {trial}: the ring never got back in step (k {k}, used {ring.Used}, fetch {cursor.Fetch}, reset index {ring.ResetIndex})");
            }

            pusher.Join();
            var missed = new List<ulong>();
            for (ulong s = firstAfter; s < firstAfter + (ulong)pushes; s++)
            {
                if (!seen.Contains(s))
                {
                    missed.Add(s);
                }
            }

            Assert.Multiple(() =>
            {
                Assert.That(missed, Is.Empty, $"trial {trial} (k {k}, {pushes} pushes): entries pushed after the overflow");
                Assert.That(cursor.Skipped, Is.EqualTo(k), $"trial {trial}: exactly KVM's k lost indices were skipped");
                Assert.That(cursor.Fetch, Is.EqualTo(ring.DirtyIndex), $"trial {trial}: the fetch index is KVM's dirty index again");
            });
        }
    }

    [Test]
    public void ARingInStepIsNeverSkipped()
    {
        var ring = new KernelRing();
        var cursor = new DirtyRingCursor(ring.Base, Size);
        var seen = new HashSet<ulong>();
        var collector = new Collector(seen);
        Assert.That(cursor.SkipRecycled(), Is.Zero, "a fresh ring");
        for (ulong s = 0; s < 10; s++)
        {
            ring.Push(s);
        }

        Assert.That(cursor.SkipRecycled(), Is.Zero, "dirty at the fetch index: harvest it");
        Assert.That(cursor.Harvest(ref collector), Is.EqualTo(10));
        Assert.That(cursor.SkipRecycled(), Is.Zero, "handed back, not yet reset: in step");
        ring.Reset();
        Assert.That(cursor.SkipRecycled(), Is.Zero, "everything recycled and nothing pushed");
        Assert.Multiple(() =>
        {
            Assert.That(cursor.Skipped, Is.Zero);
            Assert.That(ring.Used, Is.Zero);
        });
    }

    [Test]
    public void AForeignRingIsToldOnlyAfterTwoResetsInARowLeftItsEntriesUncollected()
    {
        var ring = new KernelRing();
        var cursor = new DirtyRingCursor(ring.Base, Size);
        var collector = new Collector([]);
        ring.Push(1);
        cursor.Harvest(ref collector);
        Assert.That(cursor.CheckHarvestedEntriesWereReset(), Is.True, "one reset that stopped short says nothing");
        Assert.That(cursor.CheckHarvestedEntriesWereReset(), Is.False, "two do");
        ring.Reset();
        Assert.That(cursor.CheckHarvestedEntriesWereReset(), Is.True, "collected");
    }
}
