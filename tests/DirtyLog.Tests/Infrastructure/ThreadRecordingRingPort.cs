// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>
/// A ring port that forwards to another and remembers every thread that harvested through it, so that a test can
/// check that a tracker's reaper thread has ended (an event) instead of watching a counter stand still for a while.
/// </summary>
internal sealed class ThreadRecordingRingPort(IKvmDirtyRingPort inner, bool tellSlotChanges = true) : IKvmDirtyRingPort
{
    private readonly Lock _gate = new();
    private readonly HashSet<Thread> _harvesters = [];

    /// <summary>The threads that harvested, other than those a test names as its own.</summary>
    /// <param name="except">The test's own threads.</param>
    /// <returns>A snapshot.</returns>
    public IReadOnlyList<Thread> HarvestersOtherThan(params Thread[] except)
    {
        lock (_gate)
        {
            var others = new List<Thread>(_harvesters);
            others.RemoveAll(t => System.Array.IndexOf(except, t) >= 0);
            return others;
        }
    }

    public string Name => inner.Name;

    public long SlotTableVersion => inner.SlotTableVersion;

    public uint RingEntries => inner.RingEntries;

    public int RingCount => inner.RingCount;

    public IReadOnlyList<KvmMemorySlot> GetSlots() => inner.GetSlots();

    public void SetDirtyLogging(uint slotId, bool enable) => inner.SetDirtyLogging(slotId, enable);

    public int HarvestRing<TVisitor>(int ring, ref TVisitor visitor)
        where TVisitor : struct, IDirtyRingVisitor
    {
        lock (_gate)
        {
            _harvesters.Add(Thread.CurrentThread);
        }

        return inner.HarvestRing(ring, ref visitor);
    }

    public int SkipRecycledEntries(int ring) => inner.SkipRecycledEntries(ring);

    public int ResetDirtyRings() => inner.ResetDirtyRings();

    /// <summary>Forwards, unless this port plays a VMM that changes slots without telling (then nothing is told).</summary>
    public System.IDisposable WatchSlots(IKvmSlotWatcher watcher) =>
        tellSlotChanges ? inner.WatchSlots(watcher) : new System.Threading.CancellationTokenSource();
}
