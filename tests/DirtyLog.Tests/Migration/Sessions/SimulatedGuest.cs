// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Memory;
using DirtyLog.Testing;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// A guest for session tests: one writer thread that stores a running counter into pseudo-random pages and logs each
/// write after it landed (as a dirty bit is seen only with the write), until paused. Its memory is the judge: once
/// paused, the destination must hold it byte for byte.
/// </summary>
/// <remarks>Pause and resume from one thread at a time (the session's hooks); <see cref="IsRunning"/> from any.</remarks>
internal sealed class SimulatedGuest : IDisposable
{
    private readonly GuestMemoryView _memory;
    private readonly EmulatedTracker _tracker;
    private readonly int _seed;
    private Thread? _writer;
    private volatile bool _stop;
    private long _writes;

    public SimulatedGuest(GuestMemoryView memory, EmulatedTracker tracker, int seed)
    {
        _memory = memory;
        _tracker = tracker;
        _seed = seed;
    }

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
        ulong pages = _memory.Size / 4096;
        _writer = new Thread(() =>
        {
            while (!_stop)
            {
                for (int i = 0; i < 64; i++)
                {
                    ulong page = (ulong)random.NextInt64((long)pages);
                    long value = Interlocked.Increment(ref _writes);
                    BitConverter.TryWriteBytes(_memory.Slice((page * 4096) + ((ulong)(value % 512) * 8), 8), value);
                    _tracker.Write(page * 4096);
                }

                Thread.Sleep(1); // pacing, not synchronisation: a guest that leaves the link a chance to converge
            }
        })
        { IsBackground = true, Name = "simulated guest" };
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
}
