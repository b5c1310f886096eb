// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;
using DirtyLog.Bitmaps;
using DirtyLog.Mapping;

namespace DirtyLog.Benchmarks.Mapping;

/// <summary>
/// Translation of an IOVA tracker's report (10,000 dirty runs of 4 pages, in a bitmap over the whole mapped IOVA
/// range) into guest pages, with 1,000 and 1,000,000 mappings of 64 KiB scattered over guest memory; the baseline
/// marks the same guest runs directly, as if no translation were needed, in the same run.
/// </summary>
public class TranslationBenchmarks
{
    private const ulong MappingBytes = 64UL << 10;
    private const ulong IovaStride = 2 * MappingBytes;
    private const int DirtyRuns = 10_000;

    private SparseDirtyBitmap _target = null!;
    private MappingTable _table = null!;
    private ulong[] _iovaBitmap = [];
    private ulong _iovaBits;
    private (ulong Page, ulong Count)[] _guestRuns = [];

    /// <summary>Mappings in the address space.</summary>
    [Params(1_000, 1_000_000)]
    public int Mappings { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(11);
        _target = new SparseDirtyBitmap(48);
        _table = new MappingTable();
        ulong[] guestSlots = new ulong[Mappings];
        for (int i = 0; i < Mappings; i++)
        {
            guestSlots[i] = (ulong)i;
        }

        random.Shuffle(guestSlots);
        for (int i = 0; i < Mappings; i++)
        {
            _table.Add(new IovaMapping((ulong)i * IovaStride, guestSlots[i] * MappingBytes, MappingBytes));
        }

        _iovaBits = (ulong)Mappings * IovaStride / 4096;
        _iovaBitmap = new ulong[(_iovaBits + 63) / 64];
        var runs = new List<(ulong, ulong)>();
        for (int r = 0; r < DirtyRuns; r++)
        {
            int mapping = random.Next(Mappings);
            ulong page = (ulong)random.Next(12); // 4 pages inside the mapping's 16
            ulong iovaPage = ((ulong)mapping * IovaStride / 4096) + page;
            for (ulong p = iovaPage; p < iovaPage + 4; p++)
            {
                _iovaBitmap[p / 64] |= 1UL << (int)(p % 64);
            }

            runs.Add(((guestSlots[mapping] * MappingBytes / 4096) + page, 4));
        }

        _guestRuns = [.. runs];
    }

    [GlobalCleanup]
    public void Cleanup() => _target.Dispose();

    [Benchmark(Baseline = true)]
    public void DirectMarks()
    {
        foreach ((ulong page, ulong count) in _guestRuns)
        {
            _target.MarkRange(page, count);
        }
    }

    [Benchmark]
    public ulong Translate()
    {
        var sink = new TranslatingSink(_table, _target);
        sink.Accept(0, 4096, _iovaBitmap, _iovaBits);
        return sink.PagesMarked;
    }
}
