// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration.Sessions;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>A destination's end of a connection whose reads first wait for the test's gate (what the peer sends stays on its way meanwhile).</summary>
internal sealed class HeldStream(Stream inner, Func<Task> gate) : PassThroughStream(inner)
{
    public override int Read(Span<byte> buffer)
    {
        gate().GetAwaiter().GetResult();
        return Inner.Read(buffer);
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await gate().WaitAsync(cancellationToken).ConfigureAwait(false);
        return await Inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
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
