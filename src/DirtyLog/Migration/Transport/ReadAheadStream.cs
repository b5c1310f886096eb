// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration.Sessions;

namespace DirtyLog.Migration.Transport;

/// <summary>
/// A connection read in large chunks for a reader that asks for a few KiB at a time. TLS is such a reader: it reads a
/// record's header, then the rest of the record, each a call to the connection, so over a socket one system call per
/// 4 KiB (131,000 per GiB received on the development machine, where they cost more than the decryption; the transport
/// benchmark's TLS rows). Here a small read is served from one large read of whatever the socket holds. It may start
/// with bytes already taken from the connection: the byte a destination reads to tell a TLS handshake from a plain
/// page stream is handed to TLS again this way. Writes pass straight through. It does not own the connection.
/// Thread safety: one reader and one writer at a time, as a socket's stream.
/// </summary>
internal sealed class ReadAheadStream : PassThroughStream
{
    /// <summary>As much as loopback TCP hands over in one read under load; a read this large or larger bypasses the buffer.</summary>
    public const int DefaultBufferSize = 256 * 1024;

    private readonly byte[] _buffer;
    private int _start;
    private int _end;

    /// <summary>Reads <paramref name="inner"/> ahead, after returning <paramref name="alreadyRead"/> first.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bufferSize"/> is not positive or cannot hold <paramref name="alreadyRead"/>.</exception>
    public ReadAheadStream(Stream inner, int bufferSize = DefaultBufferSize, ReadOnlySpan<byte> alreadyRead = default)
        : base(inner)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bufferSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferSize, alreadyRead.Length);
        _buffer = new byte[bufferSize];
        alreadyRead.CopyTo(_buffer);
        _end = alreadyRead.Length;
    }

    /// <summary>Bytes read from the connection and not yet returned.</summary>
    public int Buffered => _end - _start;

    public override int Read(Span<byte> buffer)
    {
        if (Buffered == 0)
        {
            if (buffer.Length >= _buffer.Length || buffer.IsEmpty)
            {
                return Inner.Read(buffer); // nothing to gain from a copy; an empty read waits for data as the connection's does
            }

            _start = 0;
            _end = 0; // a read that throws must not leave the old bytes counted as new
            _end = Inner.Read(_buffer);
        }

        return Take(buffer);
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (Buffered > 0)
        {
            return ValueTask.FromResult(Take(buffer.Span));
        }

        if (buffer.Length >= _buffer.Length || buffer.IsEmpty)
        {
            return Inner.ReadAsync(buffer, cancellationToken);
        }

        return FillAndTakeAsync(buffer, cancellationToken);
    }

    private async ValueTask<int> FillAndTakeAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        _start = 0;
        _end = 0; // as in Read
        _end = await Inner.ReadAsync(_buffer, cancellationToken).ConfigureAwait(false);
        return Take(buffer.Span);
    }

    /// <summary>Up to <paramref name="destination"/>'s length of the buffered bytes (none at the connection's end, when nothing is buffered).</summary>
    private int Take(Span<byte> destination)
    {
        int count = Math.Min(destination.Length, Buffered);
        _buffer.AsSpan(_start, count).CopyTo(destination);
        _start += count;
        return count;
    }
}
