// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.KernelTests;

/// <summary>
/// One seeded, randomized script of maps, unmaps, DMA writes, reads and bad inputs, run on the emulator
/// (<see cref="EmulatedIommu"/> with 4 KiB entries) and on the kernel's iommufd with its test IOMMU, compared step by
/// step: the same pages reported and the same errno for every refusal. Every rule the emulator keeps must be the
/// kernel's.
/// </summary>
internal static class DifferentialTests
{
    private const ulong MiB = 1UL << 20;
    private const ulong Window = 64 * MiB, Memory = 32 * MiB;
    private const int Steps = 1000;

    public static IEnumerable<(string, Action)> All(int seed)
    {
        for (int i = 0; i < 8; i++)
        {
            int s = seed + i;
            yield return ($"TheEmulatorAnswersAsTheKernelDoes(seed {s}, {Steps} steps)", () => Run(s));
        }
    }

    /// <summary>One side of the comparison: what each step did, as text.</summary>
    private interface ISide : IDisposable
    {
        string Map(ulong iova, ulong offset, ulong length);

        string Unmap(ulong iova, ulong length);

        string Dma(ulong iova);

        string Read(bool clear);
    }

    private static void Run(int seed)
    {
        using var kernel = new KernelSide();
        using var emulator = new EmulatorSide();
        var random = new Random(seed);
        var mapped = new List<(ulong Iova, ulong Length)>();
        for (int step = 0; step < Steps; step++)
        {
            (string op, Func<ISide, string> act) = Next(random, mapped);
            string k = act(kernel), e = act(emulator);
            if (k != e)
            {
                throw new InvalidOperationException($"seed {seed}, step {step}, {op}: kernel says {k}, emulator says {e}");
            }

            Track(op, k, mapped);
        }
    }

    private static (string Op, Func<ISide, string> Act) Next(Random random, List<(ulong Iova, ulong Length)> mapped)
    {
        ulong Aligned(ulong limit, ulong unit) => (ulong)random.NextInt64((long)(limit / unit)) * unit;
        int pick = random.Next(100);
        if (pick < 20 || mapped.Count == 0)
        {
            ulong length = (1 + Aligned(16, 1)) * 64 * 1024;
            ulong iova = MockIommu.ApertureStart + Aligned(Window - length, 64 * 1024);
            ulong offset = Aligned(Memory - length, 64 * 1024);
            return ($"map 0x{iova:x}+0x{length:x}", s => s.Map(iova, offset, length));
        }

        if (pick < 30)
        {
            (ulong iova, ulong length) = mapped[random.Next(mapped.Count)];
            return ($"unmap 0x{iova:x}+0x{length:x}", s => s.Unmap(iova, length));
        }

        if (pick < 35)
        {
            // Bad input: a range that cuts a mapping or covers none.
            (ulong iova, ulong length) = mapped[random.Next(mapped.Count)];
            ulong cut = iova + (64 * 1024 * (ulong)random.Next(0, 2)), cutLength = Math.Max(4096, length / 2);
            return ($"unmap (bad) 0x{cut:x}+0x{cutLength:x}", s => s.Unmap(cut, cutLength));
        }

        if (pick < 40)
        {
            (ulong iova, ulong length) = mapped[random.Next(mapped.Count)];
            return ($"map over 0x{iova:x}", s => s.Map(iova, 0, length));
        }

        if (pick < 85)
        {
            ulong iova = MockIommu.ApertureStart + Aligned(Window, 4096);
            if (random.Next(4) != 0)
            {
                (ulong at, ulong length) = mapped[random.Next(mapped.Count)];
                iova = at + Aligned(length, 4096);
            }

            return ($"dma 0x{iova:x}", s => s.Dma(iova));
        }

        if (pick < 88)
        {
            // Bad input: a map outside the mock IOMMU's aperture, below it or across its end.
            ulong length = 64 * 1024;
            ulong iova = random.Next(2) == 0 ? Aligned(MockIommu.ApertureStart, length) : MockIommu.ApertureLast + 1 - length + (32 * 1024 * (ulong)random.Next(1, 3));
            iova &= ~(4096UL - 1);
            return ($"map outside 0x{iova:x}", s => s.Map(iova, 0, length));
        }

        bool clear = random.Next(2) == 0;
        return (clear ? "read" : "read (no clear)", s => s.Read(clear));
    }

    private static void Track(string op, string outcome, List<(ulong Iova, ulong Length)> mapped)
    {
        if (outcome != "ok")
        {
            return;
        }

        string[] words = op.Split(' ');
        if (words[0] is "map" && words.Length == 2)
        {
            string[] parts = words[1].Split('+');
            mapped.Add((Convert.ToUInt64(parts[0], 16), Convert.ToUInt64(parts[1], 16)));
        }
        else if (words[0] is "unmap" && words.Length == 2)
        {
            ulong iova = Convert.ToUInt64(words[1].Split('+')[0], 16);
            mapped.RemoveAll(m => m.Iova == iova);
        }
    }

    private static string Outcome(Action action)
    {
        try
        {
            action();
            return "ok";
        }
        catch (KernelException e)
        {
            return $"errno {e.Errno}";
        }
    }

    private static string Pages(IEnumerable<ulong> pages)
    {
        ulong[] sorted = [.. pages.Order()];
        return $"{sorted.Length} pages [{string.Join(",", sorted.Take(8).Select(p => $"0x{p:x}"))}{(sorted.Length > 8 ? ",..." : "")}] hash {sorted.Aggregate(17UL, (h, p) => (h * 31) + p):x}";
    }

    private sealed class KernelSide : ISide
    {
        private readonly MockSetup _setup = new(Memory);
        private readonly IommuTracker _tracker;

        public KernelSide()
        {
            _tracker = new IommuTracker(new IommufdDirtyPort(_setup.Iommufd, _setup.Ioas, _setup.Hwpt));
            _tracker.SetMappedRanges([new AddressRange(MockIommu.ApertureStart, Window)]);
            _tracker.StartTracking();
        }

        public string Map(ulong iova, ulong offset, ulong length) => Outcome(() => _setup.Map(iova, offset, length));

        public string Unmap(ulong iova, ulong length) => Outcome(() => _setup.Iommufd.Unmap(_setup.Ioas, iova, length));

        public string Dma(ulong iova)
        {
            // A 4 KiB write is two mock pages; the kernel dirties only mapped ones.
            ulong set = _setup.Dirty(new AddressRange(MockIommu.ApertureStart, Window), [iova, iova + MockIommu.MockPageSize]);
            return set == 0 ? "not mapped" : "written";
        }

        public string Read(bool clear) =>
            Pages(MockSetup.Read(_tracker, new AddressRange(MockIommu.ApertureStart, Window), clear ? DirtyReadMode.Clear : DirtyReadMode.NoClear));

        public void Dispose()
        {
            _tracker.Dispose();
            _setup.Dispose();
        }
    }

    private sealed class EmulatorSide : ISide
    {
        private readonly EmulatedGuestMemory _memory = new(Memory);
        private readonly EmulatedIommu _iommu;
        private readonly uint _ioas;
        private readonly EmulatedHwpt _hwpt;
        private readonly IommuTracker _tracker;

        public EmulatorSide()
        {
            _iommu = new EmulatedIommu(_memory) { Aperture = new AddressRange(MockIommu.ApertureStart, MockIommu.ApertureLast - MockIommu.ApertureStart + 1) };
            _ioas = _iommu.AllocateIoas();
            _hwpt = _iommu.AllocateHwpt(_ioas, dirtyTracking: true);
            _tracker = new IommuTracker(_hwpt);
            _tracker.SetMappedRanges([new AddressRange(MockIommu.ApertureStart, Window)]);
            _tracker.StartTracking();
        }

        public string Map(ulong iova, ulong offset, ulong length) => Outcome(() => _iommu.Map(_ioas, iova, offset, length, maxEntrySize: 4096));

        public string Unmap(ulong iova, ulong length) => Outcome(() => _iommu.Unmap(_ioas, iova, length));

        public string Dma(ulong iova) => _hwpt.DmaWriteUInt64(iova, 1) ? "written" : "not mapped";

        public string Read(bool clear) =>
            Pages(MockSetup.Read(_tracker, new AddressRange(MockIommu.ApertureStart, Window), clear ? DirtyReadMode.Clear : DirtyReadMode.NoClear));

        public void Dispose()
        {
            _tracker.Dispose();
            _memory.Dispose();
        }
    }
}
