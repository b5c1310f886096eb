// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Migration.Transport;

/// <summary>
/// A connection whose first byte was read to tell TLS from a plain page stream, handed to TLS with that byte in front
/// again. It does not own the connection. Thread safety: one reader and one writer at a time, as a socket's stream.
/// </summary>
internal sealed class ReplayStream(Stream inner, byte first) : Stream
{
    private bool _replayed;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (!_replayed && !buffer.IsEmpty)
        {
            _replayed = true;
            buffer[0] = first;
            return 1;
        }

        return inner.Read(buffer);
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (!_replayed && !buffer.IsEmpty)
        {
            _replayed = true;
            buffer.Span[0] = first;
            return ValueTask.FromResult(1);
        }

        return inner.ReadAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

    public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.WriteAsync(buffer, offset, count, cancellationToken);
}
