// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Bitmaps;

/// <summary>A run of consecutive dirty pages: <see cref="PageCount"/> pages starting at <see cref="FirstPage"/>.</summary>
/// <remarks>
/// <para>Page numbers are in the page space of the bitmap that produced the run (guest pages or IOVA pages).</para>
/// <para>Thread safety: an immutable value; safe to share between threads.</para>
/// </remarks>
public readonly struct DirtyRun : IEquatable<DirtyRun>
{
    /// <summary>Creates a run.</summary>
    /// <param name="firstPage">The first page of the run.</param>
    /// <param name="pageCount">The number of pages in the run.</param>
    public DirtyRun(ulong firstPage, ulong pageCount)
    {
        FirstPage = firstPage;
        PageCount = pageCount;
    }

    /// <summary>The first page of the run.</summary>
    public ulong FirstPage { get; }

    /// <summary>The number of pages in the run.</summary>
    public ulong PageCount { get; }

    /// <summary>The page just past the run.</summary>
    public ulong EndPage => FirstPage + PageCount;

    /// <inheritdoc/>
    public bool Equals(DirtyRun other) => FirstPage == other.FirstPage && PageCount == other.PageCount;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is DirtyRun other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(FirstPage, PageCount);

    /// <summary>Compares two runs for equality.</summary>
    /// <param name="left">The first run.</param>
    /// <param name="right">The second run.</param>
    /// <returns><see langword="true"/> when both start at the same page and have the same length.</returns>
    public static bool operator ==(DirtyRun left, DirtyRun right) => left.Equals(right);

    /// <summary>Compares two runs for inequality.</summary>
    /// <param name="left">The first run.</param>
    /// <param name="right">The second run.</param>
    /// <returns><see langword="true"/> when the runs differ.</returns>
    public static bool operator !=(DirtyRun left, DirtyRun right) => !left.Equals(right);

    /// <inheritdoc/>
    public override string ToString() => $"[{FirstPage:#,0} +{PageCount:#,0}]";
}
