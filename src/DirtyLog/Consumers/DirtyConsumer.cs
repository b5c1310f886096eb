// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Bitmaps;

namespace DirtyLog.Consumers;

/// <summary>
/// One consumer of a <see cref="DirtyConsumerSet"/>: the pages published since it last took its changes, in its own
/// bitmap, so that taking them takes nothing from the other consumers.
/// </summary>
/// <remarks>
/// Thread safety: <see cref="TakeChanges{TSink}(ref TSink)"/>, <see cref="PutBack"/> and <see cref="PendingPages"/>
/// may be called from any thread, at the same time as one another and as publications (the bitmap is lock-free);
/// concurrent takes partition the pages between them. <see cref="Dispose"/> must not race this consumer's other
/// calls; it may race publications (it leaves the set under the set's lock first).
/// </remarks>
public sealed class DirtyConsumer : IDisposable
{
    private readonly DirtyConsumerSet _set;
    private SparseDirtyBitmap? _pages;
    private long _epoch;

    internal DirtyConsumer(DirtyConsumerSet set, string name, SparseDirtyBitmap pages)
    {
        _set = set;
        Name = name;
        _pages = pages;
    }

    /// <summary>The name it was registered with.</summary>
    public string Name { get; }

    /// <summary>How many times it took its changes to the end: the number of its current epoch, from 0.</summary>
    public long Epoch => Interlocked.Read(ref _epoch);

    /// <summary>Pages published to it and not yet taken (a count without clearing; a snapshot only without writers).</summary>
    /// <exception cref="ObjectDisposedException">The consumer or its set was disposed.</exception>
    public ulong PendingPages => Pages.Count();

    /// <summary>Bytes of memory its bitmap holds (see <see cref="SparseDirtyBitmap.BytesInUse"/>).</summary>
    public long BytesInUse => _pages?.BytesInUse ?? 0;

    /// <summary>Takes the pages published since the last call, handing maximal runs to <paramref name="sink"/> in ascending order.</summary>
    /// <typeparam name="TSink">The sink type; a struct sink costs no allocation.</typeparam>
    /// <param name="sink">Receives the runs.</param>
    /// <returns>What was handed over; when <see cref="HarvestResult.Completed"/> is false the rest stays for the next call and the epoch does not advance.</returns>
    /// <exception cref="ObjectDisposedException">The consumer or its set was disposed.</exception>
    public HarvestResult TakeChanges<TSink>(ref TSink sink)
        where TSink : IDirtyRunSink, allows ref struct
    {
        HarvestResult result = Pages.Harvest(ref sink);
        if (result.Completed)
        {
            Interlocked.Increment(ref _epoch);
        }

        return result;
    }

    /// <summary>Gives back pages this consumer took and could not use (a snapshot write that failed): the next take returns them.</summary>
    /// <param name="runs">The runs to give back.</param>
    /// <exception cref="ArgumentOutOfRangeException">A run ends past the page space; the runs before it were given back.</exception>
    /// <exception cref="ObjectDisposedException">The consumer or its set was disposed.</exception>
    public void PutBack(ReadOnlySpan<DirtyRun> runs)
    {
        SparseDirtyBitmap pages = Pages;
        foreach (DirtyRun run in runs)
        {
            pages.MarkRange(run.FirstPage, run.PageCount);
        }
    }

    /// <summary>Leaves the set (no publication reaches it afterwards) and frees its bitmap.</summary>
    public void Dispose()
    {
        _set.Unregister(this);
        ReleaseBitmap();
    }

    /// <summary>Marks the published runs; called under the set's lock.</summary>
    internal void Receive(ReadOnlySpan<DirtyRun> runs)
    {
        SparseDirtyBitmap pages = Pages;
        foreach (DirtyRun run in runs)
        {
            if (run.PageCount == 1)
            {
                // A round at low density is mostly single pages: the single mark is the cheaper path.
                pages.Mark(run.FirstPage);
            }
            else
            {
                pages.MarkRange(run.FirstPage, run.PageCount);
            }
        }
    }

    internal void ReleaseBitmap() => Interlocked.Exchange(ref _pages, null)?.Dispose();

    private SparseDirtyBitmap Pages => Volatile.Read(ref _pages) ?? throw new ObjectDisposedException(nameof(DirtyConsumer), $"Consumer '{Name}' was disposed.");
}
