// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Bitmaps;

/// <summary>What one harvest or peek handed to its sink.</summary>
/// <remarks>
/// <para>Values are for this call alone.</para>
/// <para>Thread safety: an immutable value; safe to share between threads.</para>
/// </remarks>
public readonly struct HarvestResult
{
    internal HarvestResult(ulong pages, ulong runs, bool completed)
    {
        Pages = pages;
        Runs = runs;
        Completed = completed;
    }

    /// <summary>The number of pages handed over (the sum of the accepted runs' lengths).</summary>
    public ulong Pages { get; }

    /// <summary>The number of runs handed over.</summary>
    public ulong Runs { get; }

    /// <summary>
    /// <see langword="true"/> when the walk reached the end of its range; <see langword="false"/> when the
    /// sink refused a run, in which case a harvest left that run and everything after it dirty.
    /// </summary>
    public bool Completed { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{Pages:#,0} pages in {Runs:#,0} runs{(Completed ? "" : " (incomplete)")}";
}
