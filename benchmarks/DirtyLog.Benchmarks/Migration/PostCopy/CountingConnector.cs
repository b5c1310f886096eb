// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration.Transport;

namespace DirtyLog.Benchmarks.Migration.PostCopy;

/// <summary>A source's connections that count the bytes written on all of them (the control connection is opened through it too).</summary>
internal sealed class CountingConnector(IMigrationConnectionFactory inner) : IMigrationConnectionFactory
{
    private long _written;

    public long BytesWritten => Interlocked.Read(ref _written);

    public async ValueTask<Stream> OpenAsync(CancellationToken cancellationToken) =>
        new CountingStream(await inner.OpenAsync(cancellationToken).ConfigureAwait(false), this);

    private sealed class CountingStream(Stream stream, CountingConnector owner) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush() => stream.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => stream.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => stream.Read(buffer, offset, count);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => stream.ReadAsync(buffer, cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count)
        {
            Interlocked.Add(ref owner._written, count);
            stream.Write(buffer, offset, count);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Interlocked.Add(ref owner._written, buffer.Length);
            return stream.WriteAsync(buffer, cancellationToken);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                stream.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
