// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using NUnit.Framework;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>Waits on what a thread is doing, not on time: the gate-driven tests use it to know a thread reached a lock.</summary>
internal static class ThreadStates
{
    /// <summary>Waits (bounded) until <paramref name="thread"/> blocks, or, when <paramref name="mayEnd"/>, ends.</summary>
    /// <param name="thread">The thread.</param>
    /// <param name="mayEnd">Whether ending instead of blocking is an answer too; if not, it fails the test.</param>
    /// <param name="what">What the thread does, for the failure messages.</param>
    public static void WaitUntilBlocked(Thread thread, bool mayEnd, string what)
    {
        var spin = new SpinWait();
        DateTime giveUp = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while ((thread.ThreadState & ThreadState.WaitSleepJoin) == 0)
        {
            if (!thread.IsAlive)
            {
                Assert.That(mayEnd, Is.True, $"{what} ended instead of blocking");
                return;
            }

            Assert.That(DateTime.UtcNow, Is.LessThan(giveUp), $"{what} never blocked");
            spin.SpinOnce();
        }
    }
}
