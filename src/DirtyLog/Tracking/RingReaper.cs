// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;

namespace DirtyLog.Tracking;

/// <summary>
/// One background thread that reaps dirty rings at a cadence while a tracker tracks, as QEMU's reaper does, so that
/// the rings are emptied long before one fills. A reap that fails stops it; the failure is kept for the owner to report.
/// </summary>
/// <remarks>Thread safety: <see cref="Stop"/> from any thread, repeatable; <see cref="Fault"/> may be read at any time.</remarks>
internal sealed class RingReaper
{
    private readonly object _sync = new(); // a monitor, not an event: nothing to dispose, however the thread ends
    private bool _stopRequested;            // under _sync
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

    /// <summary>Tells the thread to stop and waits for it, at most <paramref name="timeout"/> (a reap in progress finishes first).</summary>
    /// <param name="timeout">How long to wait for a reap in progress.</param>
    /// <returns>Whether the thread ended; if not, it ends after its reap, and a later call waits again.</returns>
    public bool Stop(TimeSpan timeout)
    {
        lock (_sync)
        {
            _stopRequested = true;
            Monitor.PulseAll(_sync);
        }

        return _thread.Join(timeout);
    }

    private void Loop(Action reap, TimeSpan interval)
    {
        while (true)
        {
            lock (_sync)
            {
                if (!_stopRequested)
                {
                    Monitor.Wait(_sync, interval);
                }

                if (_stopRequested)
                {
                    return;
                }
            }

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
