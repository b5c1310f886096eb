// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration.Transport;

/// <summary>A migration connection refused during its TLS handshake, with the reason; nothing of guest memory crossed it.</summary>
/// <remarks>Thread safety: immutable.</remarks>
public sealed class MigrationTransportException : Exception
{
    /// <summary>A refusal.</summary>
    /// <param name="refusal">Why.</param>
    /// <param name="message">What, naming the peer's certificate where there was one.</param>
    /// <param name="innerException">The TLS layer's error, if any.</param>
    public MigrationTransportException(TlsRefusal refusal, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Refusal = refusal;
    }

    /// <summary>Creates an exception (<see cref="TlsRefusal.HandshakeFailed"/>).</summary>
    public MigrationTransportException()
        : this(TlsRefusal.HandshakeFailed, "The migration connection's TLS handshake failed.")
    {
    }

    /// <summary>Creates an exception with a message (<see cref="TlsRefusal.HandshakeFailed"/>).</summary>
    /// <param name="message">The message.</param>
    public MigrationTransportException(string message)
        : this(TlsRefusal.HandshakeFailed, message)
    {
    }

    /// <summary>Creates an exception with a message and a cause (<see cref="TlsRefusal.HandshakeFailed"/>).</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public MigrationTransportException(string message, Exception innerException)
        : this(TlsRefusal.HandshakeFailed, message, innerException)
    {
    }

    /// <summary>Why the connection was refused.</summary>
    public TlsRefusal Refusal { get; }
}
