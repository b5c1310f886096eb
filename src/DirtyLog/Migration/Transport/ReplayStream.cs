// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration.Sessions;

namespace DirtyLog.Migration.Transport;

/// <summary>
/// A connection whose first byte was read to tell TLS from a plain page stream, handed to TLS with that byte in front
/// again. It does not own the connection. Thread safety: one reader and one writer at a time, as a socket's stream.
/// </summary>
internal sealed class ReplayStream(Stream inner, byte first) : PassThroughStream(inner)
{
    private bool _replayed;

    public override int Read(Span<byte> buffer)
    {
        if (!_replayed && !buffer.IsEmpty)
        {
            _replayed = true;
            buffer[0] = first;
            return 1;
        }

        return Inner.Read(buffer);
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (!_replayed && !buffer.IsEmpty)
        {
            _replayed = true;
            buffer.Span[0] = first;
            return ValueTask.FromResult(1);
        }

        return Inner.ReadAsync(buffer, cancellationToken);
    }
}
