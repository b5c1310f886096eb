// Licensed under the MIT License. See LICENSE in the repository root.

using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Migration.Transport;

/// <summary>
/// Gives a migration session more connections to its peer, for its data connections: on the source, connects to the
/// destination; on the destination, accepts the next source connection. Each is authenticated as the control
/// connection was (with TLS, <see cref="MigrationTls.ConnectAsync"/> or <see cref="MigrationTls.AcceptAsync"/>).
/// </summary>
/// <remarks>
/// <para>A destination's factory should skip a connection that fails to authenticate (say so, and accept the next):
/// the session keeps waiting for the connections it granted until
/// <see cref="Sessions.MigrationDestinationOptions.DataConnectionTimeout"/>, and drops any connection that does not
/// present itself as one of them. A connection whose reads ignore cancellation (a blocking socket) needs its own
/// receive timeout, or a peer that connects and stays silent holds the session until the timeout.</para>
/// <para>The session owns the streams it gets: it disposes them when it ends, whatever the end.</para>
/// <para>Thread safety: a session calls <see cref="OpenAsync"/> from one task at a time.</para>
/// </remarks>
public interface IMigrationConnectionFactory
{
    /// <summary>Opens (source) or accepts (destination) the next connection, authenticated.</summary>
    /// <param name="cancellationToken">Cancels the wait: the session's timeout, or the caller's.</param>
    /// <returns>The connection, duplex, for the session to own.</returns>
    ValueTask<Stream> OpenAsync(CancellationToken cancellationToken);
}
