// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Bitmaps;

/// <summary>A sink that fills a caller's buffer and refuses runs once it is full.</summary>
internal ref struct SpanRunSink : IDirtyRunSink
{
    private readonly Span<DirtyRun> _destination;

    public SpanRunSink(Span<DirtyRun> destination) => _destination = destination;

    public int Count { get; private set; }

    public bool TryAccept(DirtyRun run)
    {
        if (Count == _destination.Length)
        {
            return false;
        }

        _destination[Count++] = run;
        return true;
    }
}
