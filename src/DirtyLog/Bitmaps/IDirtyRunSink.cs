// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Bitmaps;

/// <summary>Receives the dirty runs of a harvest or a peek, in ascending page order.</summary>
/// <remarks>
/// <para>
/// Implement it on a struct (or a ref struct) and pass it by reference: the bitmap's walk is
/// specialised for the sink type, so a struct sink costs no allocation and no virtual call.
/// </para>
/// <para>
/// A sink may refuse a run by returning <see langword="false"/> (its buffer is full). The walk then
/// stops; for a harvest, the refused run and every page not yet handed over stay dirty in the
/// bitmap and are returned by the next harvest. Runs are maximal within one walk: adjacent dirty
/// pages are never split across two runs, except where a refusal cut the walk.
/// </para>
/// <para>Thread safety: called on the harvesting thread, one run at a time, in order; a sink used by one walk at a time needs no synchronisation.</para>
/// </remarks>
public interface IDirtyRunSink
{
    /// <summary>Offers one run of dirty pages.</summary>
    /// <param name="run">The run.</param>
    /// <returns><see langword="true"/> if the run was taken; <see langword="false"/> to stop the walk and leave the run dirty.</returns>
    bool TryAccept(DirtyRun run);
}
