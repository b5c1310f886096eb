// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Testing;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Emulation;

/// <summary>
/// The report gate each emulator passes before reporting: a held gate holds the report until released, counted as an
/// event a test can wait for; an open gate costs nothing a test can see.
/// </summary>
[TestFixture]
[Category("Unit")]
public class ReportGateTests
{
    [Test]
    public void AHeldIommuQueryWaitsAtTheGateUntilReleasedThenReportsWhatWasWritten()
    {
        using var memory = new EmulatedGuestMemory(1UL << 20);
        var iommu = new EmulatedIommu(memory);
        uint ioas = iommu.AllocateIoas();
        EmulatedHwpt hwpt = iommu.AllocateHwpt(ioas, dirtyTracking: true);
        iommu.Map(ioas, 0, 0, 1UL << 20);
        hwpt.SetDirtyTracking(true);
        Assert.That(hwpt.DmaWriteUInt64(5 * 4096, 1), Is.True);

        hwpt.Reports.Hold();
        var bitmap = new ulong[4];
        var query = new Thread(() => hwpt.GetDirtyBitmap(0, 1UL << 20, 4096, bitmap, noClear: false));
        query.Start();
        Assert.That(hwpt.Reports.WaitForHeld(1, TimeSpan.FromSeconds(10)), Is.True, "the query reached the gate");
        ThreadStates.WaitUntilBlocked(query, mayEnd: false, "the held query");
        Assert.That(bitmap[0], Is.Zero, "nothing is reported while held");

        hwpt.Reports.Release();
        Assert.That(query.Join(TimeSpan.FromSeconds(10)), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(bitmap[0], Is.EqualTo(1UL << 5));
            Assert.That(hwpt.Reports.HeldCount, Is.Zero);
        });
    }

    [Test]
    public void AHeldDeviceReportWaitsAtTheGateUntilReleased()
    {
        using var memory = new EmulatedGuestMemory(1UL << 20);
        var iommu = new EmulatedIommu(memory);
        uint ioas = iommu.AllocateIoas();
        iommu.Map(ioas, 0, 0, 1UL << 20);
        using var device = new EmulatedDmaDevice(iommu.AllocateHwpt(ioas, dirtyTracking: false));
        ulong pageSize = device.StartLogging([new AddressRange(0, 1UL << 20)], 4096);
        Assert.That(device.DmaWriteUInt64(7 * 4096, 1), Is.True);

        device.Reports.Hold();
        device.Reports.Hold(); // holding twice is still one gate
        var bitmap = new ulong[4];
        var report = new Thread(() => device.Report(0, 1UL << 20, pageSize, bitmap));
        report.Start();
        Assert.That(device.Reports.WaitForHeld(1, TimeSpan.FromSeconds(10)), Is.True, "the report reached the gate");
        Assert.That(bitmap[0], Is.Zero, "nothing is reported while held");

        device.Reports.Release();
        Assert.That(report.Join(TimeSpan.FromSeconds(10)), Is.True);
        Assert.That(bitmap[0], Is.EqualTo(1UL << 7));
    }

    [Test]
    public void AnOpenGateNeverCountsAReportAsHeld()
    {
        var gate = new ReportGate();
        Assert.That(gate.WaitForHeld(1, TimeSpan.Zero), Is.False);
        gate.Hold();
        gate.Release();
        Assert.That(gate.HeldCount, Is.Zero);
    }
}
