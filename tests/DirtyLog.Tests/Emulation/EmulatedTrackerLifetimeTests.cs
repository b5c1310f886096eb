// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using System.Threading;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Emulation;

/// <summary>
/// Writes documented as callable "from any thread at any time" racing the tracker's end: they must never touch the
/// log once it is freed. Before the fix the process aborted in the native allocator in most runs.
/// </summary>
[TestFixture]
public class EmulatedTrackerLifetimeTests
{
    private const ulong Coverage = 1UL << 36; // 64 GiB: random writes keep creating tree nodes while the log is freed

    [Test]
    public void WritesRacingDisposeNeverTouchTheFreedLog([Values(1, 2, 3)] int seed, [Values(false, true)] bool stopFirst)
    {
        const int Writers = 3, Trials = 40;
        var random = new Random(seed);
        for (int trial = 0; trial < Trials; trial++)
        {
            var tracker = new EmulatedTracker("racer", new AddressRange(0, Coverage));
            tracker.StartTracking();
            using var start = new Barrier(Writers + 1);
            using var disposed = new ManualResetEventSlim();
            int loggedAfterDispose = 0;
            int writerSeed = random.Next();
            Thread[] writers = Enumerable.Range(0, Writers).Select(w => new Thread(() =>
            {
                var r = new Random(writerSeed + w);
                start.SignalAndWait();
                while (!disposed.IsSet)
                {
                    tracker.Write((ulong)r.NextInt64(0, (long)Coverage));
                    tracker.WriteRange((ulong)r.NextInt64(0, (long)Coverage), 1 << 20);
                }

                // Once Dispose returned, nothing is logged any more (and nothing freed is touched).
                for (int i = 0; i < 1000; i++)
                {
                    if (tracker.Write((ulong)r.NextInt64(0, (long)Coverage)))
                    {
                        Interlocked.Increment(ref loggedAfterDispose);
                    }
                }
            }) { IsBackground = true }).ToArray();
            foreach (Thread t in writers)
            {
                t.Start();
            }

            start.SignalAndWait();
            Thread.SpinWait(random.Next(0, 50_000)); // a seeded point inside the writers' stream
            if (stopFirst)
            {
                tracker.StopTracking();
            }

            tracker.Dispose();
            disposed.Set();
            foreach (Thread t in writers)
            {
                Assert.That(t.Join(TimeSpan.FromSeconds(30)), Is.True, "a writer hung");
            }

            Assert.That(loggedAfterDispose, Is.Zero, $"trial {trial}: writes after Dispose returned were logged");
        }
    }

    [Test]
    public void AWriteThatReturnedTrueIsReadBeforeTheTrackerStops()
    {
        using var tracker = new EmulatedTracker("t", new AddressRange(0, 1UL << 30));
        tracker.StartTracking();
        Assert.That(tracker.Write(5 * 4096), Is.True);
        using var target = new DirtyLog.Bitmaps.SparseDirtyBitmap(40);
        Assert.That(tracker.ReadDirty(new AddressRange(0, 1UL << 30), target, DirtyReadMode.Clear), Is.EqualTo(1UL));
        tracker.StopTracking();
        Assert.That(tracker.Write(6 * 4096), Is.False, "a stopped tracker logs nothing");
    }
}
