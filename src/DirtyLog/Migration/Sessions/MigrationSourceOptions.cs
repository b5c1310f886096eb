// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Consumers;

namespace DirtyLog.Migration.Sessions;

/// <summary>How a source session migrates: the pre-copy rules, the bandwidth cap, the switch-over and the waits.</summary>
/// <remarks>Immutable once built; checked by <see cref="Validate"/> when the session is created.</remarks>
public sealed record MigrationSourceOptions
{
    /// <summary>
    /// The controller's rules: downtime limit, maximum rounds, the shrink rule (<see cref="PreCopyOptions.KeepCopyingWhileShrinkingTo"/>),
    /// the stall policy. The controller's defaults by default.
    /// </summary>
    public PreCopyOptions PreCopy { get; init; } = new();

    /// <summary>
    /// The most bytes per second pre-copy sends (the first pass and the rounds), 0 for no cap. Stop-copy is not
    /// capped: the guest is paused, and the downtime is the bound that matters then.
    /// </summary>
    public long BandwidthLimit { get; init; }

    /// <summary>The longest pre-copy may take before the source switches over regardless, or <see langword="null"/> for no limit.</summary>
    public TimeSpan? MaxPreCopyTime { get; init; }

    /// <summary>How the source goes from the pause to the end. <see cref="SwitchOverPolicy.Automatic"/> by default.</summary>
    public SwitchOverPolicy SwitchOver { get; init; } = SwitchOverPolicy.Automatic;

    /// <summary>The final harvest's deadline: a tracker later than this has its coverage sent whole. 2 s by default.</summary>
    public TimeSpan FinalHarvestDeadline { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// How many times a round failed by a tracker (a <see cref="Harvesting.HarvestException"/>: the harvester
    /// restarted the tracker and marked its coverage) is run again before the migration fails. 4 by default.
    /// </summary>
    public int RoundRetries { get; init; } = 4;

    /// <summary>How long the source waits for the destination to accept the stream's header. 30 s by default.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long the source waits, after the end, for the destination's word that it resumed or refused; past it the
    /// outcome is <see cref="MigrationEnd.Unknown"/> and the guest stays paused. 30 s by default.
    /// </summary>
    public TimeSpan AnswerTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Whether the source sends its memory digest after the switch-over, for the destination to check every page
    /// against (it reads all of memory once, outside the downtime). <see langword="true"/> by default.
    /// </summary>
    public bool SendMemoryDigest { get; init; } = true;

    /// <summary>
    /// Other consumers of the same trackers (a snapshot chain, a dirty-rate monitor): each round the session sends is
    /// published to them before it is committed. <see langword="null"/> for none.
    /// </summary>
    public DirtyConsumerSet? Consumers { get; init; }

    /// <summary>
    /// How many data connections to ask the destination for, besides the control connection: each round's pages are
    /// cut into 1 MiB shares spread over them, each copied and checksummed on a thread of its own (see the page
    /// stream's format, version 4). 0, the default, sends everything over the control connection. The destination may
    /// grant fewer or none; <see cref="ConnectionFactory"/> opens those it grants.
    /// </summary>
    public int DataConnections { get; init; }

    /// <summary>Opens the data connections to the destination (with TLS, authenticated as the control connection); needed when <see cref="DataConnections"/> is above 0.</summary>
    public Transport.IMigrationConnectionFactory? ConnectionFactory { get; init; }

    /// <summary>
    /// Whether the source may switch to post-copy (the destination must grant it: <see cref="MigrationDestinationOptions.AllowPostCopy"/>).
    /// Post-copy pushes pages on the data connections, so it needs <see cref="DataConnections"/> of at least 1; guest
    /// memory must then be one region at guest-physical address 0 at the switch (otherwise the session stops-copies).
    /// <see cref="PostCopyPolicy.Off"/> by default.
    /// </summary>
    public PostCopyPolicy PostCopy { get; init; }

    /// <summary>
    /// How long post-copy, once the guest runs at the destination, tries to carry on after it lost a connection: the
    /// source opens a new control connection and new push connections with <see cref="ConnectionFactory"/> (again and
    /// again, until the destination takes them) and sends the pages the destination says it still lacks, keeping its
    /// memory meanwhile. Past it the outcome says post-copy was cut. <see cref="TimeSpan.Zero"/> does not recover.
    /// 60 s by default.
    /// </summary>
    public TimeSpan PostCopyRecoveryTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Checks every option.</summary>
    /// <exception cref="ArgumentException">An option is out of range; the message names it.</exception>
    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(PreCopy, nameof(PreCopy));
        PreCopy.Validate();
        if (PreCopy.PageSize > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(PreCopy), PreCopy.PageSize, "The page size must be a power of two from 4 KiB to 2 MiB.");
        }

        PageStreamFormat.CheckPageSize((int)PreCopy.PageSize, nameof(PreCopy)); // the stream's rule, checked here and not at the first write
        ArgumentOutOfRangeException.ThrowIfNegative(BandwidthLimit, nameof(BandwidthLimit));
        if (MaxPreCopyTime is { } max && max <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxPreCopyTime), max, "The pre-copy time limit must be positive.");
        }

        if (!Enum.IsDefined(SwitchOver))
        {
            throw new ArgumentOutOfRangeException(nameof(SwitchOver), SwitchOver, "Not a switch-over policy.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(FinalHarvestDeadline, TimeSpan.Zero, nameof(FinalHarvestDeadline));
        ArgumentOutOfRangeException.ThrowIfNegative(RoundRetries, nameof(RoundRetries));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(HandshakeTimeout, TimeSpan.Zero, nameof(HandshakeTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(AnswerTimeout, TimeSpan.Zero, nameof(AnswerTimeout));
        ArgumentOutOfRangeException.ThrowIfNegative(DataConnections, nameof(DataConnections));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(DataConnections, PageStreamFormat.MaxDataConnections, nameof(DataConnections));
        if (DataConnections > 0 && ConnectionFactory is null)
        {
            throw new ArgumentException("Data connections need a ConnectionFactory to open them.", nameof(ConnectionFactory));
        }

        if (!Enum.IsDefined(PostCopy))
        {
            throw new ArgumentOutOfRangeException(nameof(PostCopy), PostCopy, "Not a post-copy policy.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(PostCopyRecoveryTimeout, TimeSpan.Zero, nameof(PostCopyRecoveryTimeout));
        if (PostCopy != PostCopyPolicy.Off && DataConnections == 0)
        {
            throw new ArgumentException("Post-copy pushes pages on data connections of their own: set DataConnections to at least 1.", nameof(PostCopy));
        }
    }
}
