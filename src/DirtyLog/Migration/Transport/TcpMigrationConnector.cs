// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Migration.Transport;

/// <summary>
/// The source's connection factory over TCP: connects to the destination for each data connection, authenticated by
/// mutual TLS when <see cref="MigrationTlsOptions"/> are given (the control connection's own, with the destination's
/// name or pin).
/// </summary>
/// <remarks>Thread safety: <see cref="OpenAsync"/> from any thread; each call makes one connection.</remarks>
public sealed class TcpMigrationConnector : IMigrationConnectionFactory
{
    private readonly string _host;
    private readonly int _port;
    private readonly MigrationTlsOptions? _tls;

    /// <summary>A factory that connects to <paramref name="host"/>:<paramref name="port"/>.</summary>
    /// <param name="host">The destination's name or address.</param>
    /// <param name="port">Its port.</param>
    /// <param name="tls">This side's TLS, as for the control connection; <see langword="null"/> for plain TCP.</param>
    /// <exception cref="ArgumentException">The host is empty, or the port out of range.</exception>
    public TcpMigrationConnector(string host, int port, MigrationTlsOptions? tls)
    {
        ArgumentException.ThrowIfNullOrEmpty(host);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        _host = host;
        _port = port;
        _tls = tls;
    }

    /// <inheritdoc/>
    /// <exception cref="MigrationTransportException">The TLS handshake failed or the destination was not the one expected.</exception>
    /// <exception cref="SocketException">The destination could not be reached.</exception>
    public async ValueTask<Stream> OpenAsync(CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(_host, _port, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var connection = new NetworkStream(socket, ownsSocket: true);
        if (_tls is null)
        {
            return connection;
        }

        try
        {
            Stream secure = await MigrationTls.ConnectAsync(connection, _tls, cancellationToken).ConfigureAwait(false);
            return new OwningStream(secure, connection);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
