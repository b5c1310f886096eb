// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Bitmaps;

/// <summary>A sink that accepts every run and keeps none: for walks whose result (pages, runs) is all that matters.</summary>
internal readonly struct DiscardingRunSink : IDirtyRunSink
{
    public bool TryAccept(DirtyRun run) => true;
}
