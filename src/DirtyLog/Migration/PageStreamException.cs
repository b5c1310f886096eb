// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration;

/// <summary>A page stream was truncated, corrupted or hostile; the message says what was wrong and where.</summary>
/// <remarks>Thread safety: immutable once thrown; safe to share between threads.</remarks>
public sealed class PageStreamException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What was wrong.</param>
    /// <param name="offset">The stream offset of the record (or header) at fault.</param>
    public PageStreamException(string message, long offset)
        : base($"{message} (at stream offset {offset:N0})") => Offset = offset;

    /// <summary>Creates the exception.</summary>
    public PageStreamException()
        : this("invalid page stream", 0)
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">What was wrong.</param>
    public PageStreamException(string message)
        : this(message, 0)
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">What was wrong.</param>
    /// <param name="innerException">The cause.</param>
    public PageStreamException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for a failure of the connection under the stream.</summary>
    /// <param name="message">What was wrong.</param>
    /// <param name="offset">The stream offset reached.</param>
    /// <param name="innerException">The connection's own error (a reset, a broken pipe).</param>
    public PageStreamException(string message, long offset, Exception innerException)
        : base($"{message} (at stream offset {offset:N0})", innerException) => Offset = offset;

    /// <summary>The stream offset of the record at fault.</summary>
    public long Offset { get; }
}
