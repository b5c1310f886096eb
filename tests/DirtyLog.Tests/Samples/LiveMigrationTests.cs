// Licensed under the MIT License. See LICENSE in the repository root.

using System.Threading.Tasks;
using DirtyLog.Harvesting;
using DirtyLog.Samples.LiveMigration;
using NUnit.Framework;

namespace DirtyLog.Tests.Samples;

/// <summary>
/// The sample's whole migration in this process (a real KVM guest where /dev/kvm exists, simulated vCPUs elsewhere),
/// with nic-b's dirty logger failing now and then under each fault policy: the destination's memory must equal the
/// source's, byte for byte.
/// </summary>
[TestFixture]
[Category("EndToEnd")]
public class LiveMigrationTests
{
    [TestCase(TrackerFaultPolicy.MarkCoverageDirty, false)]
    [TestCase(TrackerFaultPolicy.FailRound, false)]
    [TestCase(TrackerFaultPolicy.MarkCoverageDirty, true)]
    public async Task AMigrationWithAFailingDeviceTrackerEndsWithIdenticalMemory(TrackerFaultPolicy policy, bool simulatedVcpus)
    {
        var options = new MigrationOptions
        {
            NoKvm = simulatedVcpus,
            GuestBytes = 32UL << 20,
            DeviceBytes = 8UL << 20,
            PagesPerSecond = 10_000,
            InjectDeviceFaults = true,
            DevicePolicy = policy,
        };

        (bool identical, int faults) = await Program.MigrateInProcessAsync(options);
        Assert.Multiple(() =>
        {
            Assert.That(identical, Is.True, "the destination's memory equals the source's");
            Assert.That(faults, Is.GreaterThan(0), "the injected device faults went through the fault policy");
        });
    }
}
