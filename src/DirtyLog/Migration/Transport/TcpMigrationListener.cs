// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Migration.Transport;

/// <summary>
/// The destination's connection factory over TCP: accepts the source's data connections on a listening socket, each
/// authenticated and authorized by mutual TLS when <see cref="MigrationTlsOptions"/> are given (the control
/// connection's own), and skips any connection that fails that, with <see cref="Refused"/> told why.
/// </summary>
/// <remarks>
/// <para>Secure by default: without TLS it accepts only on a loopback address unless made with
/// <c>insecure: true</c> (anyone who reaches the port could then send pages into a session's data connections; the
/// token the destination granted still has to match, and a plain connection carries no authentication).</para>
/// <para>Each accepted socket gets a receive timeout of the TLS handshake timeout until it authenticated (blocking
/// reads ignore cancellation), and <c>NoDelay</c>. The listening socket stays the caller's.</para>
/// <para>Thread safety: <see cref="OpenAsync"/> from one task at a time (a session's); <see cref="Refused"/> is raised on it.</para>
/// </remarks>
public sealed class TcpMigrationListener : IMigrationConnectionFactory
{
    private readonly Socket _listener;
    private readonly MigrationTlsOptions? _tls;

    /// <summary>A factory that accepts on <paramref name="listener"/>, a socket already listening.</summary>
    /// <param name="listener">The listening socket (the caller's: it is not closed here).</param>
    /// <param name="tls">This side's TLS, as for the control connection; <see langword="null"/> for plain TCP.</param>
    /// <param name="insecure">Accept plain TCP on an address other than loopback.</param>
    /// <exception cref="ArgumentException">Plain TCP on an address other than loopback without <paramref name="insecure"/>.</exception>
    public TcpMigrationListener(Socket listener, MigrationTlsOptions? tls, bool insecure = false)
    {
        ArgumentNullException.ThrowIfNull(listener);
        if (tls is null && !insecure && listener.LocalEndPoint is IPEndPoint { Address: var address } && !IPAddress.IsLoopback(address))
        {
            throw new ArgumentException($"Plain TCP on {address} lets anyone who reaches it connect: give TLS options, or opt out with insecure: true.", nameof(tls));
        }

        _listener = listener;
        _tls = tls;
    }

    /// <summary>Told of each connection refused (its TLS failed or was not authorized); the factory then accepts the next.</summary>
    public event Action<EndPoint?, MigrationTransportException>? Refused;

    /// <inheritdoc/>
    public async ValueTask<Stream> OpenAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Socket socket = await _listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            socket.NoDelay = true; // acknowledgements and round ends are small: Nagle would hold them
            var connection = new NetworkStream(socket, ownsSocket: true);
            if (_tls is null)
            {
                return connection;
            }

            socket.ReceiveTimeout = (int)_tls.HandshakeTimeout.TotalMilliseconds;
            try
            {
                Stream secure = await MigrationTls.AcceptAsync(connection, _tls, cancellationToken).ConfigureAwait(false);
                socket.ReceiveTimeout = 0; // authenticated: the session's own rules from here
                return new OwningStream(secure, connection);
            }
            catch (MigrationTransportException refused)
            {
                EndPoint? peer = socket.RemoteEndPoint;
                await connection.DisposeAsync().ConfigureAwait(false);
                Refused?.Invoke(peer, refused); // nothing of it reached a session: wait for the next
            }
            catch
            {
                await connection.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
    }
}
