// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Harvesting;

/// <summary>A harvest round failed because a tracker under <see cref="TrackerFaultPolicy.FailRound"/> failed or was late.</summary>
/// <remarks>Thread safety: immutable once thrown; safe to share between threads.</remarks>
public sealed class HarvestException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="tracker">The tracker's name.</param>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The tracker's failure, if any.</param>
    public HarvestException(string tracker, string message, Exception? innerException = null)
        : base($"{tracker}: {message}", innerException) => Tracker = tracker;

    /// <summary>Creates an exception with no tracker named.</summary>
    public HarvestException()
        : this("unknown", "harvest failure")
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public HarvestException(string message)
        : this("unknown", message)
    {
    }

    /// <summary>Creates an exception with a message and a cause.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public HarvestException(string message, Exception innerException)
        : this("unknown", message, innerException)
    {
    }

    /// <summary>The tracker that failed the round.</summary>
    public string Tracker { get; }
}
