// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using DirtyLog.Bitmaps;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>A sink that keeps every run it is offered, optionally refusing after a number of runs.</summary>
internal struct RunCollector : IDirtyRunSink
{
    private readonly int _limit;

    public RunCollector()
        : this(int.MaxValue)
    {
    }

    public RunCollector(int limit)
    {
        _limit = limit;
        Runs = new List<DirtyRun>();
    }

    public List<DirtyRun> Runs { get; }

    public readonly bool TryAccept(DirtyRun run)
    {
        if (Runs.Count >= _limit)
        {
            return false;
        }

        Runs.Add(run);
        return true;
    }

    public readonly IEnumerable<ulong> Pages()
    {
        foreach (DirtyRun run in Runs)
        {
            for (ulong p = run.FirstPage; p < run.EndPage; p++)
            {
                yield return p;
            }
        }
    }
}
