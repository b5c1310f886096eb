// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Mapping;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Mapping;

/// <summary>
/// The correlator under concurrent DMA, map changes and harvest rounds, judged from memory contents: two emulated
/// DMA engines write unique tokens through an IOMMU-tracked and a device-tracked address space while a mapper maps,
/// unmaps and remaps (vIOMMU invalidations) and a harvester runs rounds. After every phase, every guest page whose
/// contents changed must have been reported by some round; pages reported but never written must be explained by
/// counted conservative marks or by device writes that faulted after being logged.
/// </summary>
/// <remarks>
/// The guest's rules are kept: IOMMU-tracked DMA is quiesced (a per-slot lock) before its mapping changes, as a
/// driver does; device DMA races the changes freely, and the backend lands one more device write on the range just
/// before each unmap takes effect (DMA in flight). The wrong orderings lose those writes, and the test shows it.
/// </remarks>
[TestFixture]
public class CorrelatorStressTests
{
    private const ulong GuestBytes = 32UL << 20;
    private const ulong SlotBytes = 16UL << 10;
    private const int Slots = 32;
    private const int Phases = 4;
    private const int MapChangesPerPhase = 150;

    [TestCase(1, 60_000)]
    [TestCase(2, 60_000)]
    [TestCase(3, 60_000)]
    public void EveryPageWrittenByDmaIsReportedInGuestSpaceWhileTheMapChanges(int seed, int writesPerPhase)
    {
        Result r = Run(seed, writesPerPhase, UnmapOrdering.Correct, enginesFollowTheMapper: true);
        TestContext.Out.WriteLine(r);
        Assert.Multiple(() =>
        {
            Assert.That(r.Missed, Is.Zero, "pages written by DMA and never reported");
            Assert.That(r.OverReported, Is.LessThanOrEqualTo(r.Explained), "pages reported but not written, beyond the counted causes");
            Assert.That(r.MapOperations, Is.EqualTo(Phases * MapChangesPerPhase));
            Assert.That(r.InFlightWrites, Is.GreaterThan(10), "device writes landed just before unmaps");
        });
    }

    [TestCase("DeviceReadBeforeUnmap")]
    [TestCase("TranslateWithNewMap")]
    public void AWrongOrderingLosesPagesAndTheTestSeesIt(string wrongOrdering)
    {
        var ordering = Enum.Parse<UnmapOrdering>(wrongOrdering);
        // Only the in-flight writes, which are exactly what the wrong orderings lose: with engines writing too, other
        // writes to the same pages would report many of them by chance and hide the loss.
        Result r = Run(seed: 1, writesPerPhase: 0, ordering, enginesFollowTheMapper: false);
        TestContext.Out.WriteLine(r);
        Assert.That(r.Missed, Is.GreaterThan(0), $"{ordering} must lose the writes that land around the unmap");
    }

    private sealed record Result(long Missed, long OverReported, long Explained, long MapOperations, long InFlightWrites, long Rounds, long Writes, TimeSpan Elapsed)
    {
        public override string ToString() =>
            $"{Writes:N0} DMA writes, {MapOperations:N0} map changes, {InFlightWrites:N0} in-flight writes, {Rounds:N0} rounds in {Elapsed.TotalSeconds:F1} s: {Missed} missed, {OverReported} over-reported ({Explained} explained)";
    }

    private static Result Run(int seed, int writesPerPhase, UnmapOrdering ordering, bool enginesFollowTheMapper)
    {
        var clock = Stopwatch.StartNew();
        using var memory = new EmulatedGuestMemory(GuestBytes);
        var iommu = new EmulatedIommu(memory);
        uint ioasA = iommu.AllocateIoas(), ioasB = iommu.AllocateIoas();
        EmulatedHwpt hwptA = iommu.AllocateHwpt(ioasA, dirtyTracking: true);
        EmulatedHwpt hwptB = iommu.AllocateHwpt(ioasB, dirtyTracking: false);
        using var device = new EmulatedDmaDevice(hwptB);
        using var target = new SparseDirtyBitmap(40);
        var correlator = new Correlator(target);
        var random = new Random(seed);

        long inFlight = 0, faulted = 0;
        ulong token = 0;
        var backendB = new InFlightBackend(new EmulatedIoMapBackend(iommu, ioasB, 4096), (iova, length) =>
        {
            // DMA in flight as the unmap is issued: it lands before the unmap takes effect.
            if (device.DmaWriteUInt64(iova + 8, Interlocked.Increment(ref token)))
            {
                Interlocked.Increment(ref inFlight);
            }
        });
        IoAddressSpace spaceA = correlator.AddAddressSpace(ioasA, new EmulatedIoMapBackend(iommu, ioasA, 4096));
        IoAddressSpace spaceB = correlator.AddAddressSpace(ioasB, backendB);
        spaceB.Ordering = ordering;
        using var iommuTracker = new IommuTracker(hwptA);
        using var deviceTracker = new DeviceTracker(device);
        spaceA.Attach(iommuTracker);
        spaceB.Attach(deviceTracker);

        // Slots spread over four 1 GiB blocks of IOVA, so that device ranges are re-planned and re-armed.
        var slotsA = new SlotModel(random, GuestBytes, iova: 0);
        var slotsB = new SlotModel(random, GuestBytes, iova: 0);
        slotsA.MapAll(spaceA);
        slotsB.MapAll(spaceB);
        iommuTracker.StartTracking();
        deviceTracker.StartTracking();

        var reported = new HashSet<ulong>();
        var written = new HashSet<ulong>();
        ulong[] before = Snapshot(memory);
        long mapOps = 0, rounds = 0, writes = 0;
        for (int phase = 0; phase < Phases; phase++)
        {
            bool stop = false, mapperDone = false;
            using var start = new Barrier(4);
            int phaseSeed = seed * 1000 + phase;
            Exception? failure = null;
            void Guard(Action body)
            {
                try
                {
                    start.SignalAndWait();
                    body();
                }
                catch (Exception e)
                {
                    failure ??= e;
                }
            }

            var engineA = new Thread(() => Guard(() =>
            {
                var rng = new Random(phaseSeed + 1);
                for (int i = 0; i < writesPerPhase || (enginesFollowTheMapper && !Volatile.Read(ref mapperDone)); i++)
                {
                    int slot = rng.Next(Slots);
                    lock (slotsA.Gate(slot))
                    {
                        // Quiesced against changes of this slot: the mapping is stable during the write.
                        IovaMapping m = slotsA.Current(slot);
                        hwptA.DmaWriteUInt64(m.Iova + ((ulong)rng.Next(4) * 4096), Interlocked.Increment(ref token));
                    }

                    Interlocked.Increment(ref writes);
                }
            }));
            var engineB = new Thread(() => Guard(() =>
            {
                var rng = new Random(phaseSeed + 2);
                for (int i = 0; i < writesPerPhase || (enginesFollowTheMapper && !Volatile.Read(ref mapperDone)); i++)
                {
                    // A stale view of the map is allowed: the write faults, or lands where the map says now.
                    IovaMapping m = slotsB.Current(rng.Next(Slots));
                    if (!device.DmaWriteUInt64(m.Iova + ((ulong)rng.Next(4) * 4096) + 16, Interlocked.Increment(ref token)))
                    {
                        Interlocked.Increment(ref faulted);
                    }

                    Interlocked.Increment(ref writes);
                }
            }));
            var mapper = new Thread(() => Guard(() =>
            {
                var rng = new Random(phaseSeed + 3);
                for (int op = 0; op < MapChangesPerPhase; op++)
                {
                    bool a = rng.Next(2) == 0;
                    SlotModel model = a ? slotsA : slotsB;
                    IoAddressSpace space = a ? spaceA : spaceB;
                    int slot = rng.Next(Slots);
                    lock (model.Gate(slot))
                    {
                        model.Change(space, slot, rng);
                    }

                    Interlocked.Increment(ref mapOps);
                }

                Volatile.Write(ref mapperDone, true);
            }));
            var harvester = new Thread(() => Guard(() =>
            {
                while (!Volatile.Read(ref stop))
                {
                    Round(spaceA, spaceB, iommuTracker, deviceTracker, target, reported);
                    Interlocked.Increment(ref rounds);
                }
            }));

            Thread[] threads = [engineA, engineB, mapper, harvester];
            foreach (Thread t in threads)
            {
                t.Start();
            }

            bool enginesDone = mapper.Join(TimeSpan.FromMinutes(2)) & engineA.Join(TimeSpan.FromMinutes(2)) & engineB.Join(TimeSpan.FromMinutes(2));
            Volatile.Write(ref stop, true);
            bool othersDone = harvester.Join(TimeSpan.FromMinutes(1));
            Assert.That(enginesDone && othersDone, Is.True, "the phase ended within its deadline");
            Assert.That(failure, Is.Null, failure?.ToString());

            Round(spaceA, spaceB, iommuTracker, deviceTracker, target, reported);
            ulong[] after = Snapshot(memory);
            for (int w = 0; w < after.Length; w++)
            {
                if (after[w] != before[w])
                {
                    written.Add((ulong)w * 8 / 4096);
                }
            }

            before = after;
        }

        var missed = new HashSet<ulong>(written);
        missed.ExceptWith(reported);
        var over = new HashSet<ulong>(reported);
        over.ExceptWith(written);
        long explained = spaceA.ConservativePages + spaceB.ConservativePages + Interlocked.Read(ref faulted);
        return new Result(missed.Count, over.Count, explained, mapOps, inFlight, rounds, writes, clock.Elapsed);
    }

    private static void Round(IoAddressSpace a, IoAddressSpace b, IommuTracker iommu, DeviceTracker device, SparseDirtyBitmap target, HashSet<ulong> reported)
    {
        a.ReadDirty(iommu, DirtyReadMode.Clear);
        b.ReadDirty(device, DirtyReadMode.Clear);
        target.HarvestInto(reported);
    }

    private static ulong[] Snapshot(EmulatedGuestMemory memory)
    {
        // The first 32 bytes of every page: where the engines write.
        var words = new ulong[GuestBytes / 8];
        for (ulong page = 0; page < GuestBytes / 4096; page++)
        {
            for (ulong k = 0; k < 4; k++)
            {
                words[(page * 512) + k] = memory.ReadUInt64((page * 4096) + (k * 8));
            }
        }

        return words;
    }

    /// <summary>The guest's view of one address space: a mapping per slot, changed under the slot's lock.</summary>
    private sealed class SlotModel
    {
        private readonly StrongBox<IovaMapping>[] _current = new StrongBox<IovaMapping>[Slots]; // boxed: a 24-byte struct would tear
        private readonly object[] _gates = new object[Slots];
        private readonly Random _random;
        private readonly ulong _guestBytes;

        public SlotModel(Random random, ulong guestBytes, ulong iova)
        {
            _random = random;
            _guestBytes = guestBytes;
            for (int i = 0; i < Slots; i++)
            {
                _gates[i] = new object();
                ulong slotIova = iova + ((ulong)(i % 4) << 30) + ((ulong)(i / 4) * 2 * SlotBytes);
                _current[i] = new(new IovaMapping(slotIova, RandomGuest(random), SlotBytes));
            }
        }

        public object Gate(int slot) => _gates[slot];

        public IovaMapping Current(int slot) => Volatile.Read(ref _current[slot]).Value;

        public void MapAll(IoAddressSpace space)
        {
            foreach (IovaMapping m in Array.ConvertAll(_current, b => b.Value))
            {
                space.Map(m.Iova, m.GuestAddress, m.Length);
            }
        }

        /// <summary>Unmaps then maps elsewhere in guest memory, or remaps in one step (a vIOMMU invalidation).</summary>
        public void Change(IoAddressSpace space, int slot, Random rng)
        {
            IovaMapping m = _current[slot].Value;
            var next = m with { GuestAddress = RandomGuest(rng) };
            if (rng.Next(2) == 0)
            {
                space.Unmap(m.Iova, m.Length);
                Volatile.Write(ref _current[slot], new StrongBox<IovaMapping>(next));
                space.Map(next.Iova, next.GuestAddress, next.Length);
            }
            else
            {
                space.Remap(m.Iova, m.Length, next.GuestAddress);
                Volatile.Write(ref _current[slot], new StrongBox<IovaMapping>(next));
            }
        }

        private ulong RandomGuest(Random rng) => (ulong)rng.NextInt64((long)(_guestBytes / SlotBytes)) * SlotBytes;
    }

    /// <summary>A map backend that lands one device write on the range just before each unmap takes effect.</summary>
    private sealed class InFlightBackend(IIoMapBackend inner, Action<ulong, ulong> beforeUnmap) : IIoMapBackend
    {
        public ulong IovaAlignment => inner.IovaAlignment;

        public bool AllowsPartialUnmap => inner.AllowsPartialUnmap;

        public void Map(ulong iova, ulong guestAddress, ulong length) => inner.Map(iova, guestAddress, length);

        public void Unmap(ulong iova, ulong length)
        {
            beforeUnmap(iova, length);
            inner.Unmap(iova, length);
        }
    }
}
