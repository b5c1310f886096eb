// Licensed under the MIT License. See LICENSE in the repository root.

using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;

namespace DirtyLog.Benchmarks.Bitmaps;

/// <summary>
/// Merge of a 1 GiB slot's kernel bitmap (2^18 pages, 32 KiB) into a 1 TiB guest's bitmap. Each invocation
/// merges into the next of the 1,024 slots, all cleared before the iteration, so no merge finds its bits set.
/// </summary>
[InvocationCount(Slots)]
public class MergeBenchmarks
{
    private const int Slots = 1024;
    private const int SlotPages = 1 << 18;
    private ulong[] _slotBitmap = [];
    private GuestBitmaps _bitmaps = null!;
    private int _next;

    /// <summary>Percentage of the slot's pages dirty.</summary>
    [Params(0.1, 10, 100)]
    public double DirtyPercent { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _slotBitmap = new ulong[SlotPages / 64];
        var random = new XorShift(3);
        for (int i = 0; i < (int)(SlotPages * DirtyPercent / 100); i++)
        {
            ulong page = random.Below(SlotPages);
            _slotBitmap[page >> 6] |= 1UL << (int)(page & 63);
        }

        _bitmaps = new GuestBitmaps();
    }

    /// <summary>A round's harvest took everything; then the slots' bitmaps meet cold caches.</summary>
    [IterationSetup]
    public void Clear()
    {
        _bitmaps.Clear();
        CacheEvictor.Evict();
        _next = 0;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _bitmaps.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void Dense() => _bitmaps.Dense.Merge(_slotBitmap, (ulong)(_next++ % Slots) * (SlotPages / 64));

    [Benchmark]
    public void Sparse() => _bitmaps.Sparse.MergeBitmap(_slotBitmap, (ulong)(_next++ % Slots) * SlotPages, SlotPages);
}
