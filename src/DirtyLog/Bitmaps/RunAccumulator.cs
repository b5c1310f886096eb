// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.CompilerServices;

namespace DirtyLog.Bitmaps;

/// <summary>Joins the dirty segments of a walk, which arrive in ascending order, into maximal runs for a sink.</summary>
internal ref struct RunAccumulator<TSink>
    where TSink : IDirtyRunSink, allows ref struct
{
    public TSink Sink;
    private ulong _start;
    private ulong _count;

    public RunAccumulator(TSink sink) => Sink = sink;

    public ulong Pages { get; private set; }

    public ulong Runs { get; private set; }

    /// <summary>The run the sink refused, which a harvest must put back; empty when none was.</summary>
    public DirtyRun Refused { get; private set; }

    /// <summary>Adds a segment; returns <see langword="false"/> when the sink refused the pending run (the segment was not added).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Append(ulong start, ulong count)
    {
        if (start == _start + _count && _count != 0)
        {
            _count += count;
            return true;
        }

        return FlushAndStart(start, count);
    }

    /// <summary>Hands the pending run to the sink; returns <see langword="false"/> when it was refused.</summary>
    public bool Finish() => FlushAndStart(0, 0);

    private bool FlushAndStart(ulong start, ulong count)
    {
        if (_count != 0)
        {
            var run = new DirtyRun(_start, _count);
            if (!Sink.TryAccept(run))
            {
                Refused = run;
                _count = 0;
                return false;
            }

            Pages += _count;
            Runs++;
        }

        _start = start;
        _count = count;
        return true;
    }
}
