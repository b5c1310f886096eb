// Licensed under the MIT License. See LICENSE in the repository root.

using System.IO;
using System.Threading.Tasks;
using DirtyLog.Migration.Sessions;

namespace DirtyLog.Migration.Transport;

/// <summary>
/// A TLS stream that owns what it was made over: disposing it disposes the TLS stream and then the connection under
/// it (which <see cref="MigrationTls"/> leaves open, for a VMM that keeps its control connection). What the
/// connection factories hand a session, which disposes its data connections.
/// </summary>
/// <remarks>Thread safety: one reader and one writer at a time, as a socket's stream.</remarks>
internal sealed class OwningStream(Stream secure, Stream connection) : PassThroughStream(secure)
{
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Inner.Dispose();
            connection.Dispose();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await Inner.DisposeAsync().ConfigureAwait(false);
        await connection.DisposeAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }
}
