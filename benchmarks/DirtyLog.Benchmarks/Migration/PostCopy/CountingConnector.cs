// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration.Sessions;
using DirtyLog.Migration.Transport;

namespace DirtyLog.Benchmarks.Migration.PostCopy;

/// <summary>A source's connections that count the bytes written on all of them (the control connection is opened through it too).</summary>
internal sealed class CountingConnector(IMigrationConnectionFactory inner) : IMigrationConnectionFactory
{
    private long _written;

    public long BytesWritten => Interlocked.Read(ref _written);

    public async ValueTask<Stream> OpenAsync(CancellationToken cancellationToken) =>
        new CountingStream(await inner.OpenAsync(cancellationToken).ConfigureAwait(false), this);

    private sealed class CountingStream(Stream stream, CountingConnector owner) : PassThroughStream(stream)
    {
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            Interlocked.Add(ref owner._written, buffer.Length);
            Inner.Write(buffer);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Interlocked.Add(ref owner._written, buffer.Length);
            return Inner.WriteAsync(buffer, cancellationToken);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                Inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
