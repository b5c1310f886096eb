// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm;

/// <summary>The kick's binding lives as long as its thread: a kick never signals a thread that is gone (or one that reused its id).</summary>
[TestFixture]
public class KickBindingTests : KvmFixture
{
    [Test]
    public void AKickAfterTheBoundThreadExitedSignalsNoOneAndEndsTheBinding()
    {
        using var guest = new TinyGuest(16UL << 20);
        var runner = new Thread(() => guest.Vcpu.BindKickToCurrentThread());
        runner.Start();
        runner.Join();
        int tid = guest.Vcpu.KickThreadId;
        Assert.That(tid, Is.Not.Zero);

        // The managed thread is done when Join returns; the kernel's thread may still be finishing: wait until it is gone.
        var spin = new SpinWait();
        DateTime giveUp = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (Directory.Exists($"/proc/self/task/{tid}"))
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(giveUp), "the kernel never ended the thread");
            spin.SpinOnce();
        }

        bool signalled = guest.Vcpu.Kick();

        Assert.Multiple(() =>
        {
            Assert.That(signalled, Is.False, "no live thread was bound");
            Assert.That(guest.Vcpu.KickThreadId, Is.Zero, "the binding ended with its thread");
        });
    }

    [Test]
    public void AKickOfALiveBoundThreadSignalsItAndUnbindingEndsTheBinding()
    {
        using var guest = new TinyGuest(16UL << 20);
        using var bound = new ManualResetEventSlim();
        using var done = new ManualResetEventSlim();
        bool unbound = false;
        var runner = new Thread(() =>
        {
            guest.Vcpu.BindKickToCurrentThread();
            bound.Set();
            done.Wait();
            unbound = guest.Vcpu.UnbindKick();
        });
        runner.Start();
        bound.Wait();

        Assert.That(guest.Vcpu.Kick(), Is.True, "the live bound thread was signalled");
        done.Set();
        runner.Join();
        Assert.Multiple(() =>
        {
            Assert.That(unbound, Is.True);
            Assert.That(guest.Vcpu.KickThreadId, Is.Zero);
            Assert.That(guest.Vcpu.Kick(), Is.False, "nothing is bound any more");
        });
    }
}
