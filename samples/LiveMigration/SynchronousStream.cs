// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// A stream whose asynchronous reads and writes are its inner stream's blocking ones, completed before they return:
/// an async consumer (a <see cref="System.IO.Pipelines.PipeReader"/> and the page stream reader on top of it) then
/// runs on the one thread that calls it and wakes from the kernel's <c>recv</c> directly.
/// </summary>
/// <remarks>
/// Why: the destination's downtime includes the wake-up after the end record arrives. An asynchronous socket read
/// wakes through the runtime's event thread and then the thread pool: 1.6 to 2.2 ms measured here, where a thread
/// blocked in <c>recv</c> on the same machine wakes in 20 to 80 us. Not thread-safe: one reader and one writer, as
/// on a socket.
/// </remarks>
internal sealed class SynchronousStream(Stream inner) : Stream
{
    public override bool CanRead => inner.CanRead;

    public override bool CanSeek => false;

    public override bool CanWrite => inner.CanWrite;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

    public override int Read(Span<byte> buffer) => inner.Read(buffer);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return new ValueTask<int>(inner.Read(buffer.Span));
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

    public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        inner.Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken)
    {
        inner.Flush();
        return Task.CompletedTask;
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
