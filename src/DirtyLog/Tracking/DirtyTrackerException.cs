// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking;

/// <summary>A tracker could not start, read or plan; the message names the tracker and the cause.</summary>
/// <remarks>Thread safety: immutable once thrown; safe to share between threads.</remarks>
public sealed class DirtyTrackerException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="tracker">The tracker's name.</param>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The underlying failure, such as a <c>KernelException</c>.</param>
    public DirtyTrackerException(string tracker, string message, Exception? innerException = null)
        : base($"{tracker}: {message}", innerException) => Tracker = tracker;

    /// <summary>Creates an exception with no tracker named.</summary>
    public DirtyTrackerException()
        : this("unknown", "tracker failure")
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public DirtyTrackerException(string message)
        : this("unknown", message)
    {
    }

    /// <summary>Creates an exception with a message and a cause.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The cause.</param>
    public DirtyTrackerException(string message, Exception innerException)
        : this("unknown", message, innerException)
    {
    }

    /// <summary>The name of the tracker that failed.</summary>
    public string Tracker { get; }
}
