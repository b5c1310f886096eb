// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration.Sessions;

/// <summary>Why a migration session failed or was refused, and in which phase; the cause is the inner exception.</summary>
/// <remarks>Thread safety: immutable.</remarks>
public sealed class MigrationException : Exception
{
    /// <summary>A failure in <paramref name="phase"/>.</summary>
    /// <param name="phase">The phase it failed in.</param>
    /// <param name="message">What failed.</param>
    /// <param name="innerException">The cause, if any.</param>
    public MigrationException(MigrationPhase phase, string message, Exception? innerException = null)
        : base($"{message} (phase: {phase})", innerException)
    {
        Phase = phase;
    }

    /// <summary>Creates an exception with no phase information (<see cref="MigrationPhase.Handshake"/>).</summary>
    public MigrationException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">The message.</param>
    public MigrationException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and a cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public MigrationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The phase the migration failed in.</summary>
    public MigrationPhase Phase { get; }

    /// <summary>Whether the destination refused the migration in so many words (its reason is the message).</summary>
    public bool RefusedByDestination { get; init; }
}
