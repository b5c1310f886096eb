// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Bitmaps;

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>The sink every harvest benchmark uses, for ours and the baselines alike: it sums what it is given.</summary>
internal struct CountingSink : IDirtyRunSink
{
    public ulong Pages;
    public ulong Runs;

    public bool TryAccept(DirtyRun run)
    {
        Pages += run.PageCount;
        Runs++;
        return true;
    }
}
