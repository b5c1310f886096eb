// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Security.Cryptography.X509Certificates;

namespace DirtyLog.Migration.Transport;

/// <summary>
/// One side's TLS 1.3 settings for a migration connection: its own certificate, the issuers it trusts for the peer's,
/// and who may connect (destination) or whom it expects (source). Both sides authenticate: mutual TLS.
/// </summary>
/// <remarks>
/// <para>A peer is accepted when its certificate chains to one of <see cref="TrustedIssuers"/> (only those: the
/// machine's store is not consulted), is within its validity, and (destination) its subject is in
/// <see cref="AllowedSubjects"/>, or its public key's SHA-256 pin is in <see cref="AllowedPins"/>, or
/// <see cref="Authorize"/> says yes; (source) it carries <see cref="ServerName"/> or its key is pinned.</para>
/// <para>Thread safety: immutable once built; the certificates are shared read-only.</para>
/// </remarks>
public sealed record MigrationTlsOptions
{
    /// <summary>This side's certificate, with its private key.</summary>
    public required X509Certificate2 Certificate { get; init; }

    /// <summary>The issuers (CA certificates) the peer's certificate must chain to.</summary>
    public X509Certificate2Collection TrustedIssuers { get; init; } = [];

    /// <summary>Destination: the source subjects allowed, as the certificate states them (for example <c>CN=source-1</c>).</summary>
    public IReadOnlyList<string> AllowedSubjects { get; init; } = [];

    /// <summary>Either side: base64 SHA-256 pins of the peer's SubjectPublicKeyInfo, accepted whatever the name.</summary>
    public IReadOnlyList<string> AllowedPins { get; init; } = [];

    /// <summary>Destination: a last say on a trusted certificate that no list allowed; <see langword="null"/> for none.</summary>
    public Func<X509Certificate2, bool>? Authorize { get; init; }

    /// <summary>Source: the name the destination's certificate must carry (a DNS name in its SAN, or its CN).</summary>
    public string? ServerName { get; init; }

    /// <summary>How long the handshake may take. 30 s by default.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Options from PEM files: this side's certificate and key, and the CA file of the issuers to trust.</summary>
    /// <param name="certificateFile">This side's certificate, PEM.</param>
    /// <param name="keyFile">Its private key, PEM.</param>
    /// <param name="caFile">The trusted issuers, PEM (one or more certificates).</param>
    /// <returns>The options, to complete with the allow list or the server name.</returns>
    /// <exception cref="System.Security.Cryptography.CryptographicException">A file is not what it should be.</exception>
    public static MigrationTlsOptions FromPemFiles(string certificateFile, string keyFile, string caFile)
    {
        var issuers = new X509Certificate2Collection();
        issuers.ImportFromPemFile(caFile);
        return new MigrationTlsOptions { Certificate = X509Certificate2.CreateFromPemFile(certificateFile, keyFile), TrustedIssuers = issuers };
    }
}
