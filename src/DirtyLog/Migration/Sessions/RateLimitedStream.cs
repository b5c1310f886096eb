// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Migration.Sessions;

/// <summary>
/// A connection whose writes are paced to a byte rate (the session's bandwidth cap); reads pass through. The rate can
/// change at any time and 0 lifts it (stop-copy is never capped). It does not own the connection.
/// </summary>
/// <remarks>
/// Pacing is by schedule, not a token bucket refilled by a timer: each write is due when the bytes written since the
/// rate was set, at that rate, are; a late writer catches up at once, never sending faster than the rate on average.
/// Thread safety: one writer and one reader at a time, as a socket's stream; <see cref="Limit"/> from the writer's task.
/// </remarks>
internal sealed class RateLimitedStream(Stream inner) : PassThroughStream(inner)
{
    private const int Slice = 256 << 10; // paced in slices, so a 1 MiB record does not go out as one burst

    private long _limit;
    private long _since = Stopwatch.GetTimestamp();
    private long _bytesSince;

    /// <summary>Bytes per second, 0 for none.</summary>
    public long Limit
    {
        get => Volatile.Read(ref _limit);
        set
        {
            Volatile.Write(ref _limit, value);
            _since = Stopwatch.GetTimestamp();
            _bytesSince = 0;
        }
    }

    public override void Write(ReadOnlySpan<byte> buffer) => WriteAsync(buffer.ToArray()).AsTask().GetAwaiter().GetResult();

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (!buffer.IsEmpty)
        {
            long limit = Limit;
            if (limit == 0)
            {
                await Inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
                return;
            }

            ReadOnlyMemory<byte> slice = buffer[..Math.Min(buffer.Length, Slice)];
            TimeSpan due = TimeSpan.FromSeconds((double)_bytesSince / limit) - Stopwatch.GetElapsedTime(_since);
            if (due > TimeSpan.Zero)
            {
                await Task.Delay(due, cancellationToken).ConfigureAwait(false);
            }

            await Inner.WriteAsync(slice, cancellationToken).ConfigureAwait(false);
            _bytesSince += slice.Length;
            buffer = buffer[slice.Length..];
        }
    }
}
