// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Bitmaps.Layouts;

namespace DirtyLog.Bitmaps;

/// <summary>Harvest (read and clear), peek and count: one walk over the summaries, specialised per mode and sink.</summary>
public sealed partial class SparseDirtyBitmap
{
    /// <summary>Reads and clears every dirty page, handing maximal runs to <paramref name="sink"/> in ascending order.</summary>
    /// <typeparam name="TSink">The sink type; a struct sink costs no allocation and no virtual call.</typeparam>
    /// <param name="sink">Receives the runs; its state is written back when the call returns.</param>
    /// <returns>What was handed over, and whether the walk completed.</returns>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <remarks>
    /// Clean regions cost nothing: the walk follows summary bits only, so a clean bitmap of any size is
    /// harvested in a few reads. Each dirty word is taken with one atomic exchange. If the sink refuses a run,
    /// that run and everything the walk had not yet handed over stay dirty (the result says
    /// <see cref="HarvestResult.Completed"/> = <see langword="false"/>). An exception thrown by the sink
    /// propagates; the pages of runs not yet accepted are then lost to this harvest, so sinks should not throw.
    /// </remarks>
    public HarvestResult Harvest<TSink>(ref TSink sink)
        where TSink : IDirtyRunSink, allows ref struct
        => Walk<HarvestWalk, TSink>(0, _rootSpan, ref sink);

    /// <summary>Reads and clears the dirty pages of a range, handing runs to <paramref name="sink"/>.</summary>
    /// <typeparam name="TSink">The sink type.</typeparam>
    /// <param name="firstPage">The first page of the range.</param>
    /// <param name="pageCount">The number of pages in the range.</param>
    /// <param name="sink">Receives the runs, clipped to the range.</param>
    /// <returns>What was handed over, and whether the walk completed.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The range overflows or ends past <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <remarks>Pages outside the range are left untouched, even those sharing a word with the range's ends.</remarks>
    public HarvestResult HarvestRange<TSink>(ulong firstPage, ulong pageCount, ref TSink sink)
        where TSink : IDirtyRunSink, allows ref struct
    {
        CheckRange(firstPage, pageCount, nameof(pageCount));
        return pageCount == 0 ? new HarvestResult(0, 0, true) : Walk<HarvestWalk, TSink>(firstPage, firstPage + pageCount, ref sink);
    }

    /// <summary>Reads and clears dirty pages into <paramref name="destination"/> until it is full.</summary>
    /// <param name="destination">The buffer; <see cref="HarvestResult.Runs"/> tells how many entries were written.</param>
    /// <returns>What was written; <see cref="HarvestResult.Completed"/> is <see langword="false"/> when the buffer filled up and pages remain dirty.</returns>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    public HarvestResult Harvest(Span<DirtyRun> destination)
    {
        var sink = new SpanRunSink(destination);
        return Harvest(ref sink);
    }

    /// <summary>Reads the dirty pages without clearing them, handing runs to <paramref name="sink"/>.</summary>
    /// <typeparam name="TSink">The sink type.</typeparam>
    /// <param name="sink">Receives the runs.</param>
    /// <returns>What was handed over.</returns>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    /// <remarks>A snapshot only in the absence of writers: marks racing a peek may or may not be seen.</remarks>
    public HarvestResult Peek<TSink>(ref TSink sink)
        where TSink : IDirtyRunSink, allows ref struct
        => Walk<PeekWalk, TSink>(0, _rootSpan, ref sink);

    /// <summary>Reads the dirty pages of a range without clearing them.</summary>
    /// <typeparam name="TSink">The sink type.</typeparam>
    /// <param name="firstPage">The first page of the range.</param>
    /// <param name="pageCount">The number of pages in the range.</param>
    /// <param name="sink">Receives the runs, clipped to the range.</param>
    /// <returns>What was handed over.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The range overflows or ends past <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    public HarvestResult PeekRange<TSink>(ulong firstPage, ulong pageCount, ref TSink sink)
        where TSink : IDirtyRunSink, allows ref struct
    {
        CheckRange(firstPage, pageCount, nameof(pageCount));
        return pageCount == 0 ? new HarvestResult(0, 0, true) : Walk<PeekWalk, TSink>(firstPage, firstPage + pageCount, ref sink);
    }

    /// <summary>Counts the dirty pages without clearing them.</summary>
    /// <returns>The number of dirty pages seen.</returns>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    public ulong Count()
    {
        var sink = default(DiscardingRunSink);
        return Peek(ref sink).Pages;
    }

    /// <summary>Counts the dirty pages of a range without clearing them.</summary>
    /// <param name="firstPage">The first page of the range.</param>
    /// <param name="pageCount">The number of pages in the range.</param>
    /// <returns>The number of dirty pages seen in the range.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The range overflows or ends past <see cref="PageCount"/>.</exception>
    /// <exception cref="ObjectDisposedException">The bitmap was disposed.</exception>
    public ulong CountRange(ulong firstPage, ulong pageCount)
    {
        var sink = default(DiscardingRunSink);
        return PeekRange(firstPage, pageCount, ref sink).Pages;
    }

    private HarvestResult Walk<TMode, TSink>(ulong lo, ulong hi, ref TSink sink)
        where TMode : struct, IWalkMode
        where TSink : IDirtyRunSink, allows ref struct
    {
        var acc = new RunAccumulator<TSink>(sink);
        bool walked = IsFlat
            ? _flat.Walk<TMode, TSink>(lo, hi, ref acc)
            : Tree.Walk<TMode, TSink>(lo, hi, ref acc);
        bool completed = walked && acc.Finish();
        sink = acc.Sink;
        if (!completed && TMode.Clears)
        {
            // The refused run was taken from the words already: mark it again. Everything after it was put
            // back (or never taken) while the walk unwound.
            DirtyRun refused = acc.Refused;
            MarkRangeUnchecked(refused.FirstPage, refused.EndPage);
        }

        return new HarvestResult(acc.Pages, acc.Runs, completed);
    }
}
