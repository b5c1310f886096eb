// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration.Transport;

/// <summary>Why a migration connection was refused before a byte of guest memory crossed it.</summary>
public enum TlsRefusal
{
    /// <summary>The peer presented no certificate (a destination requires the source's).</summary>
    NoCertificate,

    /// <summary>The peer's certificate does not chain to an issuer this side trusts.</summary>
    UntrustedIssuer,

    /// <summary>The peer's certificate (or one of its issuers) has expired.</summary>
    Expired,

    /// <summary>The peer's certificate (or one of its issuers) is not valid yet.</summary>
    NotYetValid,

    /// <summary>The peer's certificate is valid, but its subject is not on the allow list, its key not pinned, and the callback said no.</summary>
    NotAuthorized,

    /// <summary>The destination's certificate does not carry the name the source asked for.</summary>
    NameMismatch,

    /// <summary>The peer spoke plain page stream to a TLS endpoint.</summary>
    PlainAtTlsEndpoint,

    /// <summary>The TLS handshake failed for another reason (protocol, cipher, a reset); the message has the cause.</summary>
    HandshakeFailed,
}
