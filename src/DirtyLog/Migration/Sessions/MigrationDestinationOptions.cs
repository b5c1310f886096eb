// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration.Sessions;

/// <summary>How a destination session receives.</summary>
/// <remarks>Immutable once built; checked by <see cref="Validate"/> when the session is created.</remarks>
public sealed record MigrationDestinationOptions
{
    /// <summary>
    /// Whether guest memory reads zero wherever the stream has not written (a fresh mapping): zero pages are then
    /// never touched (<see cref="PageStreamReader.MemoryStartsZeroed"/>). <see langword="false"/> by default: every
    /// zero page is checked and cleared.
    /// </summary>
    public bool MemoryStartsZeroed { get; init; }

    /// <summary>
    /// Whether the destination waits for the source's memory digest after it resumed and checks every page against
    /// it (<see cref="MigrationOutcome.MemoryVerified"/>). <see langword="true"/> by default; a source that sends none
    /// then leaves the outcome unverified.
    /// </summary>
    public bool VerifyMemoryDigest { get; init; } = true;

    /// <summary>Bytes per page the stream must use. 4096 by default.</summary>
    public int PageSize { get; init; } = 4096;

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The page size is not a power of two from 4 KiB to 2 MiB.</exception>
    public void Validate() => PageStreamFormat.CheckPageSize(PageSize, nameof(PageSize));
}
