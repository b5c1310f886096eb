// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Concurrent;
using BenchmarkDotNet.Attributes;
using DirtyLog.Benchmarks.Infrastructure;

namespace DirtyLog.Benchmarks.Bitmaps;

/// <summary>
/// The hash-set baseline's harvest, at the sparse patterns it can hold (a dense pattern would take gigabytes):
/// take every key out, sort, and join into runs, next to the dense bitmap of the same run.
/// </summary>
[InvocationCount(1)]
public class DictionaryHarvestBenchmarks
{
    private ulong[] _pattern = [];
    private ulong[] _keys = [];
    private ConcurrentDictionary<ulong, byte> _dictionary = null!;
    private GuestBitmaps _bitmaps = null!;

    /// <summary>Which pages are dirty.</summary>
    [Params(DirtyPattern.Random0_01, DirtyPattern.Random0_1, DirtyPattern.Random1)]
    public DirtyPattern Pattern { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _pattern = DirtyPatterns.Build(Pattern);
        _dictionary = new ConcurrentDictionary<ulong, byte>();
        _bitmaps = new GuestBitmaps();
        _keys = new ulong[(int)(DirtyPatterns.GuestPages / 50)];
    }

    [GlobalCleanup]
    public void Cleanup() => _bitmaps.Dispose();

    [IterationSetup(Target = nameof(Dense))]
    public void FillDense() => _bitmaps.FillDense(_pattern);

    [IterationSetup(Target = nameof(ConcurrentDictionary))]
    public void FillDictionary()
    {
        for (int w = 0; w < _pattern.Length; w++)
        {
            ulong bits = _pattern[w];
            while (bits != 0)
            {
                _dictionary.TryAdd(((ulong)w << 6) + (ulong)System.Numerics.BitOperations.TrailingZeroCount(bits), 0);
                bits &= bits - 1;
            }
        }

        CacheEvictor.Evict();
    }

    [Benchmark(Baseline = true)]
    public ulong Dense() => _bitmaps.HarvestDense();

    [Benchmark]
    public ulong ConcurrentDictionary()
    {
        int n = 0;
        foreach (ulong key in _dictionary.Keys)
        {
            if (_dictionary.TryRemove(key, out _))
            {
                _keys[n++] = key;
            }
        }

        Array.Sort(_keys, 0, n);
        var sink = default(CountingSink);
        for (int i = 0; i < n;)
        {
            int j = i + 1;
            while (j < n && _keys[j] == _keys[j - 1] + 1)
            {
                j++;
            }

            sink.TryAccept(new DirtyLog.Bitmaps.DirtyRun(_keys[i], (ulong)(j - i)));
            i = j;
        }

        return sink.Pages;
    }
}
