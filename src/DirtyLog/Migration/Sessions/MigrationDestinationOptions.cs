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

    /// <summary>
    /// Accepts the data connections the destination grants a source that asks for some (with TLS, authenticated
    /// and authorized as the control connection); <see langword="null"/>, the default, grants none, and the pages
    /// come over the control connection.
    /// </summary>
    public Transport.IMigrationConnectionFactory? ConnectionFactory { get; init; }

    /// <summary>The most data connections granted, whatever the source asks (up to 64). 8 by default.</summary>
    public int MaxDataConnections { get; init; } = 8;

    /// <summary>
    /// How long the granted data connections may take to arrive, all of them, after the header's acceptance;
    /// connections that are not one of them are dropped meanwhile. Past it, the destination refuses. 30 s by default.
    /// </summary>
    public TimeSpan DataConnectionTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Whether the destination grants post-copy to a source that offers it: the guest then resumes here before every
    /// page arrived, and a page it touches that is not here yet is fetched from the source (<see cref="PostCopy.PostCopyMemory"/>).
    /// Needs <see cref="ConnectionFactory"/> (the push comes on the data connections), and guest memory that is
    /// anonymous private memory, one region at guest-physical address 0, which the guest's vCPUs and native code touch
    /// (see <see cref="PostCopy.PostCopyMemory"/> for what may touch a missing page). <see langword="false"/> by default.
    /// </summary>
    public bool AllowPostCopy { get; init; }

    /// <summary>
    /// How long post-copy, once the guest runs here, waits for the source to come back after a lost connection: the
    /// guest's touches of missing pages wait meanwhile, and <see cref="ConnectionFactory"/> accepts the source's new
    /// connections (those not of this session are dropped). Past it the outcome says post-copy was cut and the guest's
    /// touches of missing pages wait for ever. <see cref="TimeSpan.Zero"/> does not recover. 60 s by default.
    /// </summary>
    public TimeSpan PostCopyRecoveryTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// The page size is not a power of two from 4 KiB to 2 MiB, the data connections are not 0 to 64, the data
    /// connections' timeout is not positive, or post-copy's recovery timeout is negative.
    /// </exception>
    /// <exception cref="ArgumentException">Post-copy is allowed with no data connection.</exception>
    public void Validate()
    {
        PageStreamFormat.CheckPageSize(PageSize, nameof(PageSize));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxDataConnections, nameof(MaxDataConnections));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxDataConnections, PageStreamFormat.MaxDataConnections, nameof(MaxDataConnections));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(DataConnectionTimeout, TimeSpan.Zero, nameof(DataConnectionTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThan(PostCopyRecoveryTimeout, TimeSpan.Zero, nameof(PostCopyRecoveryTimeout));
        if (AllowPostCopy && (ConnectionFactory is null || MaxDataConnections == 0))
        {
            throw new ArgumentException("Post-copy's pages are pushed on data connections: set a ConnectionFactory and MaxDataConnections of at least 1.", nameof(AllowPostCopy));
        }
    }
}
