// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;

namespace DirtyLog.Testing;

/// <summary>
/// The gate every report of an emulator (a tracker's read, an IOMMU's dirty query, a device's DMA-logging report)
/// passes at its start: open by default; a test closes it to hold reports for as long as it wants, and waits for the
/// event "N reports are held" instead of a time. A benchmark sets <see cref="Delay"/> for latency instead.
/// </summary>
/// <remarks>
/// Thread safety: every member may be called from any thread. A report held at the gate holds whatever its emulator
/// holds at that point (a tracker's read lock, for one): release the gate before disposing the emulator. The gate
/// is a monitor and owns nothing to dispose.
/// </remarks>
public sealed class ReportGate
{
    private readonly object _sync = new(); // a monitor: Wait and PulseAll, no kernel object
    private bool _closed; // under _sync
    private int _held;

    /// <summary>Reports waiting at the gate now.</summary>
    public int HeldCount => Volatile.Read(ref _held);

    /// <summary>
    /// How long each report takes after passing the gate (a firmware queue, an IOMMU walk): latency for benchmarks.
    /// Tests hold the gate instead, so that they judge events, not durations.
    /// </summary>
    public TimeSpan Delay { get; set; }

    /// <summary>Closes the gate: every report waits at its start until <see cref="Release"/>.</summary>
    public void Hold()
    {
        lock (_sync)
        {
            _closed = true;
        }
    }

    /// <summary>Opens the gate: held reports go on, and later ones do not wait.</summary>
    public void Release()
    {
        lock (_sync)
        {
            _closed = false;
            Monitor.PulseAll(_sync);
        }
    }

    /// <summary>Waits until at least <paramref name="count"/> reports are held at the gate.</summary>
    /// <param name="count">Reports.</param>
    /// <param name="timeout">How long to wait at most.</param>
    /// <returns>Whether they were.</returns>
    public bool WaitForHeld(int count, TimeSpan timeout) => SpinWait.SpinUntil(() => HeldCount >= count, timeout);

    /// <summary>Called by an emulator at the start of a report: waits while the gate is held, then for <see cref="Delay"/>.</summary>
    internal void Pass()
    {
        lock (_sync)
        {
            if (_closed)
            {
                Interlocked.Increment(ref _held);
                while (_closed)
                {
                    Monitor.Wait(_sync);
                }

                Interlocked.Decrement(ref _held);
            }
        }

        TimeSpan delay = Delay;
        if (delay > TimeSpan.Zero)
        {
            Thread.Sleep(delay);
        }
    }
}
