// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Linq;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Migration.Transport;

/// <summary>
/// Mutual TLS 1.3 for a migration connection (<see cref="SslStream"/>): the destination accepts, the source connects,
/// each checks the other's certificate by <see cref="MigrationTlsOptions"/>, and a refusal names its
/// <see cref="TlsRefusal"/> before a byte of guest memory crossed. The stream returned is the sessions' connection.
/// </summary>
/// <remarks>
/// <para>The destination reads the first byte before TLS: a TLS handshake starts with 0x16, a plain page stream with
/// <c>D</c>, so a plain source at a TLS endpoint is told as such (and a TLS source at a plain destination is refused
/// by the page stream's header check). Revocation is not checked (no network here, as in QEMU's default).</para>
/// <para>The handshake timeout cancels the connection's reads: a stream that ignores cancellation (a blocking
/// socket) needs its own receive timeout, or a peer that connects and stays silent holds the call.</para>
/// <para>Thread safety: the methods are thread-safe; each call authenticates one connection.</para>
/// </remarks>
public static class MigrationTls
{
    private const byte TlsHandshakeRecord = 0x16;

    /// <summary>The destination's side: accepts a source on <paramref name="connection"/> if it is authenticated and authorized.</summary>
    /// <param name="connection">The accepted connection (it stays the caller's to close).</param>
    /// <param name="options">The destination's certificate, trusted issuers and allow lists.</param>
    /// <param name="cancellationToken">Cancels the handshake.</param>
    /// <returns>The authenticated stream.</returns>
    /// <exception cref="MigrationTransportException">The source was refused; <see cref="MigrationTransportException.Refusal"/> says why.</exception>
    public static async Task<SslStream> AcceptAsync(Stream connection, MigrationTlsOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(options);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.HandshakeTimeout);
        byte[] first = new byte[1];
        int read;
        try
        {
            read = await connection.ReadAsync(first, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            throw new MigrationTransportException(TlsRefusal.HandshakeFailed, $"no TLS handshake arrived: {e.Message}", e);
        }

        if (read == 0)
        {
            throw new MigrationTransportException(TlsRefusal.HandshakeFailed, "the peer closed the connection before its TLS handshake");
        }

        if (first[0] != TlsHandshakeRecord)
        {
            throw new MigrationTransportException(TlsRefusal.PlainAtTlsEndpoint,
                $"the peer sent 0x{first[0]:x2}{(first[0] == (byte)'D' ? " (the first byte of a plain page stream)" : "")} where a TLS handshake (0x16) was expected: plain TCP at a TLS endpoint");
        }

        var ssl = new SslStream(new ReadAheadStream(connection, alreadyRead: first), leaveInnerStreamOpen: true);
        PeerCheck? verdict = null;
        var sslOptions = new SslServerAuthenticationOptions
        {
            ServerCertificate = options.Certificate,
            ClientCertificateRequired = true,
            EnabledSslProtocols = SslProtocols.Tls13,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, certificate, _, _) => (verdict = PeerCheck.OfSource(certificate, options)).Accepted,
        };
        return await HandshakeAsync(ssl, s => s.AuthenticateAsServerAsync(sslOptions, timeout.Token), () => verdict, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The source's side: connects to a destination on <paramref name="connection"/> if it is the one expected.</summary>
    /// <param name="connection">The connected connection (it stays the caller's to close).</param>
    /// <param name="options">The source's certificate, trusted issuers, and the destination's name or pin.</param>
    /// <param name="cancellationToken">Cancels the handshake.</param>
    /// <returns>The authenticated stream.</returns>
    /// <exception cref="ArgumentException">Neither <see cref="MigrationTlsOptions.ServerName"/> nor a pin says whom to expect.</exception>
    /// <exception cref="MigrationTransportException">The destination was refused, or refused us; the refusal says why.</exception>
    public static async Task<SslStream> ConnectAsync(Stream connection, MigrationTlsOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrEmpty(options.ServerName) && options.AllowedPins.Count == 0)
        {
            throw new ArgumentException("A source must know whom it sends a guest to: set the destination's ServerName or pin its key.", nameof(options));
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.HandshakeTimeout);
        var ssl = new SslStream(new ReadAheadStream(connection), leaveInnerStreamOpen: true);
        PeerCheck? verdict = null;
        var sslOptions = new SslClientAuthenticationOptions
        {
            TargetHost = options.ServerName ?? "",
            ClientCertificates = [options.Certificate],
            LocalCertificateSelectionCallback = (_, _, _, _, _) => options.Certificate, // sent whatever issuers the destination names: it says why it refuses
            EnabledSslProtocols = SslProtocols.Tls13,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, certificate, _, _) => (verdict = PeerCheck.OfDestination(certificate, options)).Accepted,
        };
        return await HandshakeAsync(ssl, s => s.AuthenticateAsClientAsync(sslOptions, timeout.Token), () => verdict, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The base64 SHA-256 pin of a certificate's SubjectPublicKeyInfo, as <see cref="MigrationTlsOptions.AllowedPins"/> holds them.</summary>
    /// <param name="certificate">The certificate.</param>
    /// <returns>The pin.</returns>
    public static string PinOf(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return Convert.ToBase64String(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));
    }

    private static async Task<SslStream> HandshakeAsync(SslStream ssl, Func<SslStream, Task> handshake, Func<PeerCheck?> verdict, CancellationToken cancellationToken)
    {
        try
        {
            await handshake(ssl).ConfigureAwait(false);
            return ssl;
        }
        catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            PeerCheck? check = verdict();
            if (check is { Accepted: false } refused)
            {
                throw new MigrationTransportException(refused.Refusal, refused.Reason, e);
            }

            throw new MigrationTransportException(TlsRefusal.HandshakeFailed, $"the TLS handshake failed: {e.Message}", e);
        }
    }

    /// <summary>What this side made of the peer's certificate.</summary>
    private sealed record PeerCheck(bool Accepted, TlsRefusal Refusal, string Reason)
    {
        private static readonly PeerCheck Accept = new(true, default, "");

        public static PeerCheck OfSource(X509Certificate? presented, MigrationTlsOptions options)
        {
            if (Validity(presented, options, out X509Certificate2? certificate) is { } settled)
            {
                return settled; // refused, or accepted by its pin whatever its subject
            }

            string subject = certificate!.Subject;
            if (options.AllowedSubjects.Contains(subject, StringComparer.Ordinal) || options.Authorize?.Invoke(certificate) == true)
            {
                return Accept;
            }

            return new(false, TlsRefusal.NotAuthorized, $"the source \"{subject}\" is trusted but not allowed: it is not on the allow list, its key is not pinned, and no callback allowed it");
        }

        public static PeerCheck OfDestination(X509Certificate? presented, MigrationTlsOptions options)
        {
            if (Validity(presented, options, out X509Certificate2? certificate) is { } settled)
            {
                return settled; // refused, or accepted by its pin whatever its name
            }

            return options.ServerName is { Length: > 0 } name && !certificate!.MatchesHostname(name, allowWildcards: false)
                ? new(false, TlsRefusal.NameMismatch, $"the destination's certificate \"{certificate.Subject}\" is not for \"{name}\"")
                : Accept;
        }

        /// <summary>
        /// Settles what the certificate alone settles: missing or out of its validity (refused), pinned (accepted), not
        /// chained to a trusted issuer (refused); <see langword="null"/> when it chains and the name or subject decides.
        /// </summary>
        private static PeerCheck? Validity(X509Certificate? presented, MigrationTlsOptions options, out X509Certificate2? certificate)
        {
            certificate = presented as X509Certificate2;
            if (certificate is null)
            {
                return new(false, TlsRefusal.NoCertificate, "the peer presented no certificate");
            }

            DateTime now = DateTime.Now;
            if (certificate.NotAfter < now)
            {
                return new(false, TlsRefusal.Expired, $"the certificate \"{certificate.Subject}\" expired on {certificate.NotAfter:u}");
            }

            if (certificate.NotBefore > now)
            {
                return new(false, TlsRefusal.NotYetValid, $"the certificate \"{certificate.Subject}\" is valid only from {certificate.NotBefore:u}");
            }

            if (options.AllowedPins.Contains(PinOf(certificate), StringComparer.Ordinal))
            {
                return Accept; // pinned: this key is the peer, whoever issued it
            }

            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(options.TrustedIssuers);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            if (chain.Build(certificate))
            {
                return null;
            }

            X509ChainStatusFlags flags = chain.ChainStatus.Aggregate(X509ChainStatusFlags.NoError, (all, s) => all | s.Status);
            if ((flags & X509ChainStatusFlags.NotTimeValid) != 0)
            {
                X509Certificate2? issuer = chain.ChainElements.Skip(1).Select(e => e.Certificate).FirstOrDefault(c => c.NotAfter < now || c.NotBefore > now);
                return issuer is not null && issuer.NotBefore > now
                    ? new(false, TlsRefusal.NotYetValid, $"the issuer \"{issuer.Subject}\" of \"{certificate.Subject}\" is not valid yet")
                    : new(false, TlsRefusal.Expired, $"the issuer \"{issuer?.Subject}\" of \"{certificate.Subject}\" has expired");
            }

            return new(false, TlsRefusal.UntrustedIssuer, $"the certificate \"{certificate.Subject}\" from \"{certificate.Issuer}\" does not chain to a trusted issuer ({flags})");
        }
    }
}
