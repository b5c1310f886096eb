// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;
using DirtyLog.Tests.Infrastructure;
using NUnit.Framework;

namespace DirtyLog.Tests.Kvm;

/// <summary>
/// The kernel's dirty_log_test, on the real /dev/kvm: the guest writes the iteration number into pseudo-random pages;
/// after each iteration the host collects the dirty pages through the tracker and checks, from memory, that every page
/// holding the current iteration was reported. Pages reported but not written are allowed, and counted.
/// </summary>
[TestFixture]
public class KvmDirtyLogTrackerTests : KvmFixture
{
    [TestCase(false, 1u, 64UL << 20)]
    [TestCase(false, 2u, 64UL << 20)]
    [TestCase(true, 1u, 64UL << 20)]
    [TestCase(true, 3u, 64UL << 20)]
    [TestCase(false, 4u, 1UL << 30)]
    [TestCase(true, 5u, 1UL << 30)]
    public void EveryPageHoldingTheCurrentIterationWasReported(bool manualProtect, uint seed, ulong slotBytes)
    {
        using var guest = new TinyGuest(slotBytes, seed, manualProtect);
        Assume.That(!manualProtect || guest.Vm.CheckExtension(DirtyLog.Native.Linux.Kvm.KvmConstants.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) != 0, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is not offered");
        using var tracker = new KvmDirtyLogTracker(new KvmVmPort(guest.Vm), slotId: 0);
        tracker.StartTracking();
        using var reported = new SparseDirtyBitmap(40);
        long overReported = 0;
        for (ulong iteration = 1; iteration <= 8; iteration++)
        {
            guest.Write(writes: 3000, value: iteration);
            tracker.ReadDirty(tracker.Coverage[0], reported, DirtyReadMode.Clear);
            var pages = new HashSet<ulong>();
            reported.HarvestInto(pages);
            int missed = 0;
            for (ulong page = 2; page < guest.Pages; page++)
            {
                bool holdsIteration = guest.Memory.ReadUInt64(page * 4096) == iteration;
                if (holdsIteration && !pages.Contains(page))
                {
                    missed++;
                }
                else if (!holdsIteration && pages.Contains(page))
                {
                    overReported++;
                }
            }

            Assert.That(missed, Is.Zero, $"iteration {iteration}: pages written but not reported");
        }

        TestContext.Out.WriteLine($"{(manualProtect ? "manual" : "classic")}: {overReported} pages reported but not holding the iteration");
        tracker.StopTracking();
    }

    [Test]
    public void ANoClearReadIsOnlyOfferedInManualMode()
    {
        using var classic = new TinyGuest(1UL << 20, 1, manualDirtyLogProtect: false);
        using var tracker = new KvmDirtyLogTracker(new KvmVmPort(classic.Vm), 0);
        tracker.StartTracking();
        using var pages = new SparseDirtyBitmap(40);
        Assert.That(() => tracker.ReadDirty(tracker.Coverage[0], pages, DirtyReadMode.NoClear), Throws.TypeOf<NotSupportedException>());
    }

    [Test]
    public void AMissingSlotIsRefusedAtConstruction()
    {
        using var guest = new TinyGuest(1UL << 20);
        Assert.That(() => new KvmDirtyLogTracker(new KvmVmPort(guest.Vm), slotId: 5), Throws.ArgumentException.With.Message.Contains("slot 5"));
    }

    [Test]
    public void AKernelErrorNamesTheIoctlAndTheErrno()
    {
        using var guest = new TinyGuest(1UL << 20);
        // Logging is off on the slot: KVM_GET_DIRTY_LOG answers ENOENT (no bitmap).
        var error = Assert.Throws<KernelException>(() => guest.Vm.GetDirtyLog(0, new ulong[4]))!;
        Assert.Multiple(() =>
        {
            Assert.That(error.Errno, Is.EqualTo(Errno.ENOENT));
            Assert.That(error.Message, Does.Contain("KVM_GET_DIRTY_LOG"));
        });
    }
}
