// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;

namespace DirtyLog.Tracking;

/// <summary>
/// One background thread that reaps dirty rings at a cadence while a tracker tracks, as QEMU's reaper does, so that
/// the rings are emptied long before one fills. A reap that fails stops it; the failure is kept for the owner to report.
/// </summary>
/// <remarks>Thread safety: <see cref="Dispose"/> from any thread, once; <see cref="Fault"/> may be read at any time.</remarks>
internal sealed class RingReaper : IDisposable
{
    private readonly ManualResetEventSlim _stop = new();
    private readonly Thread _thread;
    private Exception? _fault;

    /// <summary>Starts reaping.</summary>
    /// <param name="reap">One reap of every ring.</param>
    /// <param name="interval">The cadence.</param>
    /// <param name="name">The thread's name.</param>
    public RingReaper(Action reap, TimeSpan interval, string name)
    {
        _thread = new Thread(() => Loop(reap, interval)) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>The failure that stopped the reaper, if one did.</summary>
    public Exception? Fault => Volatile.Read(ref _fault);

    /// <summary>Stops the thread and waits for it (a reap in progress finishes first).</summary>
    public void Dispose()
    {
        _stop.Set();
        _thread.Join();
        _stop.Dispose();
    }

    private void Loop(Action reap, TimeSpan interval)
    {
        while (!_stop.Wait(interval))
        {
            try
            {
                reap();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // The owner's next read reports it and faults; reaping on would hide the failure.
                Volatile.Write(ref _fault, e);
                return;
            }
        }
    }
}
