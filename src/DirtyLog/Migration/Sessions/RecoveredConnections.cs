// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;

namespace DirtyLog.Migration.Sessions;

/// <summary>The connections a post-copy recovery opened or accepted: the session's to dispose, each once, a cut one quietly.</summary>
/// <remarks>Thread safety: used by the session's task alone.</remarks>
internal sealed class RecoveredConnections
{
    private List<Stream> _streams = [];

    /// <summary>Takes <paramref name="streams"/> as the current run's, letting go of none (the caller disposed those before).</summary>
    public void Take(List<Stream> streams) => _streams = streams;

    /// <summary>Disposes the current run's connections (a blocked read or write returns); calling it again does nothing.</summary>
    public void DisposeAll()
    {
        foreach (Stream connection in _streams)
        {
            try
            {
                connection.Dispose();
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
            {
                // Cut already.
            }
        }

        _streams = [];
    }
}
