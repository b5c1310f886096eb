// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Memory;
using DirtyLog.Testing;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// A guest for session tests: one writer thread that stores a running counter into pseudo-random pages and logs each
/// write after it landed (as a dirty bit is seen only with the write), until paused. Its memory is the judge: once
/// paused, the destination must hold it byte for byte.
/// </summary>
/// <remarks>Pause and resume from one thread at a time (the session's hooks); <see cref="GuestWriterThread.IsRunning"/> from any.</remarks>
internal sealed class SimulatedGuest(GuestMemoryView memory, EmulatedTracker tracker, int seed) : GuestWriterThread(seed)
{
    protected override void WriteBatch(Random random)
    {
        ulong pages = memory.Size / 4096;
        for (int i = 0; i < 64; i++)
        {
            ulong page = (ulong)random.NextInt64((long)pages);
            long value = NextValue();
            BitConverter.TryWriteBytes(memory.Slice((page * 4096) + ((ulong)(value % 512) * 8), 8), value);
            tracker.Write(page * 4096);
        }
    }
}
