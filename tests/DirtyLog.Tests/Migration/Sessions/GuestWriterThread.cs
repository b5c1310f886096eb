// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// The vCPU of a session test's guest: one thread that writes a batch, then leaves the link a moment, until paused.
/// The batch is the guest's own; each write is logged after it landed, as a dirty bit is seen only with the write.
/// </summary>
/// <remarks>Pause and resume from one thread at a time (the session's hooks); <see cref="IsRunning"/> from any.</remarks>
internal abstract class GuestWriterThread : IDisposable
{
    private readonly int _seed;
    private Thread? _writer;
    private volatile bool _stop;
    private long _writes;

    protected GuestWriterThread(int seed) => _seed = seed;

    /// <summary>Whether the writer runs.</summary>
    public bool IsRunning => _writer is not null;

    /// <summary>Writes so far.</summary>
    public long Writes => Interlocked.Read(ref _writes);

    public void Resume()
    {
        if (_writer is not null)
        {
            throw new InvalidOperationException("The guest runs already: a second resume would be a guest running twice.");
        }

        _stop = false;
        var random = new Random(_seed + (int)Writes);
        _writer = new Thread(() =>
        {
            while (!_stop)
            {
                WriteBatch(random);
                Thread.Sleep(1); // pacing, not synchronisation: a guest that leaves the link a chance to converge
            }
        })
        { IsBackground = true, Name = GetType().Name };
        _writer.Start();
    }

    public void Pause()
    {
        if (_writer is not { } writer)
        {
            return;
        }

        _stop = true;
        writer.Join();
        _writer = null;
    }

    public void Dispose() => Pause();

    /// <summary>The next value to store: a running count of every write.</summary>
    protected long NextValue() => Interlocked.Increment(ref _writes);

    /// <summary>One batch of writes, on the writer thread.</summary>
    protected abstract void WriteBatch(Random random);
}
