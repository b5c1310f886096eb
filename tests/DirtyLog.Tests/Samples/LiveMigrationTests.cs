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

    [Test]
    public async Task AGuestMigratesInOneProcessOverFourDataConnectionsAllMutualTls()
    {
        string folder = System.IO.Directory.CreateTempSubdirectory("dirtylog-certs-").FullName;
        try
        {
            Assert.That(TestCertificates.Write(folder), Is.Zero);
            var options = new MigrationOptions
            {
                GuestBytes = 32UL << 20,
                DeviceBytes = 8UL << 20,
                PagesPerSecond = 10_000,
                Connections = 4,
                TlsDirectory = folder,
                Warmup = System.TimeSpan.FromMilliseconds(100),
            };

            (bool ok, _) = await Program.MigrateInProcessAsync(options);
            Assert.That(ok, Is.True, "the destination holds the source's guest (its invariant on KVM, byte for byte with simulated writers)");
        }
        finally
        {
            System.IO.Directory.Delete(folder, recursive: true);
        }
    }

    [TestCase(0u, 0.0)]
    [TestCase(65536u, 0.0)]
    [TestCase(0u, 0.6)]
    [TestCase(65536u, 0.6)]
    public async Task TheGuestAloneMigratesAndRunsOnWithTheBitmapOrTheRingWithOrWithoutConvergingRounds(uint ringEntries, double shrinkTo)
    {
        Assume.That(System.IO.File.Exists("/dev/kvm"), "needs /dev/kvm: the vCPU and its dirty log are KVM's");
        var options = new MigrationOptions
        {
            GuestBytes = 32UL << 20,
            DeviceBytes = 4UL << 20,
            PagesPerSecond = 0, // unthrottled: rounds follow one another as fast as the guest dirties pages
            VcpuOnly = true,
            DirtyRingEntries = ringEntries,
            KeepCopyingWhileShrinkingTo = shrinkTo,
            Warmup = System.TimeSpan.FromMilliseconds(200),
        };

        (bool ok, _) = await Program.MigrateInProcessAsync(options);
        Assert.That(ok, Is.True, "the guest resumed on the destination with its invariant intact and every page matching the source's digest");
    }
}
