// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Native;

namespace DirtyLog.Tracking.Ports;

/// <summary>
/// The watchers of one slot table, for implementations of <see cref="IKvmSlotPort.WatchSlots"/>: registrations and
/// the calls of one change at a time.
/// </summary>
/// <remarks>
/// Thread safety: every member may be called from any thread. Changes are told one at a time, under this object's lock,
/// which is taken before any watcher's own lock; so a watcher must never register, unregister or change slots from
/// inside its calls, and must not hold a lock of its own (other than its tracker's outer lock) when unregistering.
/// </remarks>
public sealed class KvmSlotWatchers
{
    private readonly Lock _changes = new();
    private IKvmSlotWatcher[] _watchers = []; // copy on write, under _changes

    /// <summary>Registers a watcher.</summary>
    /// <param name="watcher">The watcher.</param>
    /// <returns>The registration; disposing it waits for a call in progress.</returns>
    public IDisposable Add(IKvmSlotWatcher watcher)
    {
        ArgumentNullException.ThrowIfNull(watcher);
        lock (_changes)
        {
            _watchers = [.. _watchers, watcher];
        }

        return new Registration(this, watcher);
    }

    /// <summary>Tells every watcher that <paramref name="slot"/> was added.</summary>
    /// <param name="slot">The slot, already in the table.</param>
    public void SlotAdded(KvmMemorySlot slot)
    {
        lock (_changes)
        {
            foreach (IKvmSlotWatcher watcher in _watchers)
            {
                watcher.OnSlotAdded(slot);
            }
        }
    }

    /// <summary>Tells every watcher that <paramref name="slot"/> is about to be removed.</summary>
    /// <param name="slot">The slot, still in the table.</param>
    public void SlotRemoving(KvmMemorySlot slot)
    {
        lock (_changes)
        {
            foreach (IKvmSlotWatcher watcher in _watchers)
            {
                watcher.OnSlotRemoving(slot);
            }
        }
    }

    private void Remove(IKvmSlotWatcher watcher)
    {
        lock (_changes)
        {
            _watchers = Array.FindAll(_watchers, w => !ReferenceEquals(w, watcher));
        }
    }

    private sealed class Registration(KvmSlotWatchers owner, IKvmSlotWatcher watcher) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner.Remove(watcher);
            }
        }
    }
}
