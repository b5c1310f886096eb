// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using DirtyLog.Bitmaps;

namespace DirtyLog.Harvesting;

/// <summary>
/// Collects a round's runs into an array rented from the shared pool (grown by renting a larger one), so that a
/// round of tens of thousands of runs does not allocate on the large-object heap every time.
/// </summary>
internal struct PooledRunSink : IDirtyRunSink
{
    public PooledRunSink(int capacity)
    {
        Runs = ArrayPool<DirtyRun>.Shared.Rent(capacity);
    }

    public DirtyRun[] Runs { get; private set; }

    public int Count { get; private set; }

    public ulong Pages { get; private set; }

    public bool TryAccept(DirtyRun run)
    {
        if (Count == Runs.Length)
        {
            DirtyRun[] larger = ArrayPool<DirtyRun>.Shared.Rent(Runs.Length * 2);
            Runs.AsSpan().CopyTo(larger);
            ArrayPool<DirtyRun>.Shared.Return(Runs);
            Runs = larger;
        }

        Runs[Count++] = run;
        Pages += run.PageCount;
        return true;
    }
}
