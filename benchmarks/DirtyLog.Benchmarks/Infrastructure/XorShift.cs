// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>xorshift64: the seeded generator of every benchmark input, so that runs compare like with like.</summary>
internal struct XorShift
{
    private ulong _state;

    public XorShift(ulong seed) => _state = seed == 0 ? 0x9E3779B97F4A7C15UL : seed;

    public ulong Next()
    {
        ulong x = _state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        _state = x;
        return x;
    }

    /// <summary>A value below <paramref name="bound"/>, a power of two.</summary>
    public ulong Below(ulong bound) => Next() & (bound - 1);
}
