// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using DirtyLog.Bitmaps;

namespace DirtyLog.Harvesting;

/// <summary>Collects harvested runs into a list and counts their pages.</summary>
internal struct ListRunSink : IDirtyRunSink
{
    private readonly List<DirtyRun> _runs;

    public ListRunSink(List<DirtyRun> runs) => _runs = runs;

    public ulong Pages { get; private set; }

    public bool TryAccept(DirtyRun run)
    {
        _runs.Add(run);
        Pages += run.PageCount;
        return true;
    }
}
