// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Bitmaps;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Userfaultfd;

/// <summary>
/// The userfaultfd tracker's logic (guest-physical translation, re-issued scans, re-protection, a scan that makes no
/// progress) on the emulated write-protect port; and the emulator held to the kernel's rules.
/// </summary>
[TestFixture]
public class EmulatedUserfaultfdTrackerTests
{
    private const ulong MiB = 1UL << 20;
    private const ulong GuestLow = 0, GuestHigh = 4UL << 30; // two regions: below 4 GiB and above

    private EmulatedGuestMemory _memory = null!;
    private EmulatedWriteProtect _port = null!;
    private UserfaultfdTracker _tracker = null!;
    private SparseDirtyBitmap _target = null!;

    private nint Host(ulong offset) => _memory.AsView().Address + (nint)offset;

    [SetUp]
    public void CreateTracker()
    {
        _memory = new EmulatedGuestMemory(16 * MiB);
        _port = new EmulatedWriteProtect(_memory);
        _tracker = new UserfaultfdTracker([new HostMemoryRegion(Host(0), GuestLow, 8 * MiB), new HostMemoryRegion(Host(8 * MiB), GuestHigh, 8 * MiB)], port: _port);
        _target = new SparseDirtyBitmap(40);
        _tracker.StartTracking();
    }

    [TearDown]
    public void DisposeTracker()
    {
        _tracker.Dispose();
        _target.Dispose();
        _memory.Dispose();
    }

    private HashSet<ulong> Read(DirtyReadMode mode = DirtyReadMode.Clear)
    {
        _tracker.ReadDirty(new AddressRange(0, 8UL << 30), _target, mode);
        var pages = new HashSet<ulong>();
        _target.HarvestInto(pages);
        return pages;
    }

    [Test]
    public void WritesAreReportedAtTheirGuestAddressOnceUntilWrittenAgain()
    {
        _port.Write(Host(4096 + 8), 1);
        _port.Write(Host((8 * MiB) + 8192), 1);
        Assert.That(Read(DirtyReadMode.NoClear), Is.EquivalentTo(new[] { 1UL, (GuestHigh / 4096) + 2 }), "a peek");
        Assert.That(Read(), Is.EquivalentTo(new[] { 1UL, (GuestHigh / 4096) + 2 }));
        Assert.That(Read(), Is.Empty, "re-protected by the clearing read");
        _port.Write(Host(4096), 2);
        Assert.That(Read(), Is.EquivalentTo(new[] { 1UL }));
    }

    [TestCase(1)]
    [TestCase(2)]
    public void ScansThatStopEarlyAreReissuedUntilEveryWrittenPageIsReported(int seed)
    {
        _tracker.Dispose();
        _tracker = new UserfaultfdTracker([new HostMemoryRegion(Host(0), GuestLow, 16 * MiB)], port: _port) { RegionBufferLength = 3 };
        _tracker.StartTracking();
        _port.StopEveryPages = 97;
        var random = new Random(seed);
        var written = new HashSet<ulong>();
        for (int i = 0; i < 2000; i++)
        {
            ulong page = (ulong)random.NextInt64(0, (long)(16 * MiB / 4096));
            _port.Write(Host(page * 4096), (ulong)seed);
            written.Add(page);
        }

        Assert.That(Read(), Is.EquivalentTo(written));
        Assert.That(_tracker.Reissues, Is.GreaterThan(100), "the scan was re-issued from walk_end, again and again");
        Assert.That(Read(), Is.Empty);
    }

    [Test]
    public void AScanThatMakesNoProgressFaultsTheTrackerInsteadOfDroppingTheRest()
    {
        _port.Write(Host(8), 1);
        _port.StallNextScan = true;
        Assert.Throws<DirtyTrackerException>(() => Read());
        Assert.That(_tracker.State, Is.EqualTo(DirtyTrackerState.Faulted), "its coverage must be treated as dirty");
    }

    [Test]
    public void TheEmulatorRefusesWhatTheKernelRefuses()
    {
        var regions = new PageRegion[4];
        using var other = new EmulatedGuestMemory(1 * MiB);
        var port = new EmulatedWriteProtect(other);
        nint baseAddress = other.AsView().Address;
        Assert.Multiple(() =>
        {
            Assert.That(() => port.ScanWritten((ulong)baseAddress, (ulong)baseAddress + 4096, regions, false, out _),
                Throws.TypeOf<KernelException>().With.Property(nameof(KernelException.Errno)).EqualTo(Errno.EPERM), "a range not armed");
            Assert.That(() => port.Arm([(baseAddress + 100, 4096)]),
                Throws.TypeOf<KernelException>().With.Property(nameof(KernelException.Errno)).EqualTo(Errno.EINVAL), "an unaligned range");
        });

        port.Arm([(baseAddress, 1 * MiB)]);
        port.Write(baseAddress + 4096, 1);
        port.Write(baseAddress + 8192, 1);
        port.Write(baseAddress + (5 * 4096), 1);
        Assert.Multiple(() =>
        {
            Assert.That(() => port.ScanWritten((ulong)baseAddress + 1, (ulong)baseAddress + 4096, regions, false, out _),
                Throws.TypeOf<KernelException>().With.Property(nameof(KernelException.Errno)).EqualTo(Errno.EINVAL), "an unaligned start");
            Assert.That(port.ScanWritten((ulong)baseAddress, (ulong)baseAddress + MiB, regions, false, out ulong walkEnd), Is.EqualTo(2), "neighbours merge");
            Assert.That(walkEnd, Is.EqualTo((ulong)baseAddress + MiB));
            Assert.That((regions[0].Start, regions[0].End, regions[0].Categories), Is.EqualTo(((ulong)baseAddress + 4096, (ulong)baseAddress + (3 * 4096), EmulatedWriteProtect.PageIsWritten)));
            Assert.That(port.ScanWritten((ulong)baseAddress, (ulong)baseAddress + MiB, regions.AsSpan(0, 1), false, out walkEnd), Is.EqualTo(1));
            Assert.That(walkEnd, Is.EqualTo((ulong)baseAddress + (5 * 4096)), "a full buffer stops where the next region starts");
        });
    }
}
