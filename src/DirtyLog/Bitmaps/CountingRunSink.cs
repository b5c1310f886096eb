// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Bitmaps;

/// <summary>A sink that only counts; the walk's result carries the totals.</summary>
internal struct CountingRunSink : IDirtyRunSink
{
    public readonly bool TryAccept(DirtyRun run) => true;
}
