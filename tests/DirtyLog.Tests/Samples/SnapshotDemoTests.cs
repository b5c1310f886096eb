// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using DirtyLog.Samples.LiveMigration;
using NUnit.Framework;

namespace DirtyLog.Tests.Samples;

/// <summary>
/// The sample's snapshot command on a real KVM guest: a full snapshot and diffs taken while the guest runs, the chain
/// equal to a full snapshot of the last state byte for byte, and a new VM restored from it keeping the invariant.
/// </summary>
[TestFixture]
public class SnapshotDemoTests
{
    [TestCase(0u, 20_000, false)]
    [TestCase(65536u, 0, false)]
    [TestCase(0u, 20_000, true)]
    [TestCase(65536u, 0, true)]
    public async Task AChainOfDiffsRestoresAGuestThatRunsOnWithItsInvariant(uint ringEntries, int rate, bool writeProtect)
    {
        Assume.That(File.Exists("/dev/kvm"), "needs /dev/kvm: the vCPU and its dirty log are KVM's");
        DirectoryInfo dir = Directory.CreateTempSubdirectory("snapshot-test-");
        try
        {
            var options = new MigrationOptions
            {
                GuestBytes = 32UL << 20,
                DeviceBytes = 4UL << 20,
                PagesPerSecond = rate,
                DirtyRingEntries = ringEntries,
                Warmup = TimeSpan.FromMilliseconds(300),
            };

            if (writeProtect)
            {
                RequireKernelFaultUserfaultfd();
            }

            int exit = await SnapshotDemo.RunAsync(options, diffs: 3, TimeSpan.FromMilliseconds(100), dir.FullName, writeProtect);
            string[] files = dir.GetFiles().Select(f => f.Name).Order(StringComparer.Ordinal).ToArray();
            Assert.Multiple(() =>
            {
                Assert.That(exit, Is.Zero, "the chain equals the full snapshot, and the restored guest resumed with its invariant intact");
                Assert.That(files, Is.EqualTo(new[] { "0.full", "1.diff", "2.diff", "3.diff", "last.full" }));
            });
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [TestCase(0u)]
    [TestCase(65536u)]
    public async Task ASnapshotChainKeptWhileTheGuestMigratesEqualsTheSwitchOverState(uint ringEntries)
    {
        Assume.That(File.Exists("/dev/kvm"), "needs /dev/kvm: the vCPU and its dirty log are KVM's");
        DirectoryInfo dir = Directory.CreateTempSubdirectory("migration-snapshots-");
        try
        {
            var options = new MigrationOptions
            {
                GuestBytes = 32UL << 20,
                DeviceBytes = 4UL << 20,
                PagesPerSecond = 0,
                VcpuOnly = true,
                DirtyRingEntries = ringEntries,
                Warmup = TimeSpan.FromMilliseconds(200),
                SnapshotDirectory = dir.FullName,
            };

            (bool ok, _) = await Program.MigrateInProcessAsync(options);
            string[] files = dir.GetFiles().Select(f => f.Name).Order(StringComparer.Ordinal).ToArray();
            Assert.Multiple(() =>
            {
                Assert.That(ok, Is.True, "the migration succeeded and the snapshot chain, fed the same rounds, equals the switch-over state");
                Assert.That(files, Is.EqualTo(new[] { "0.full", "1.diff", "switch-over.full" }));
            });
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static void RequireKernelFaultUserfaultfd()
    {
        try
        {
            DirtyLog.Native.UserfaultfdContext.CreateWriteProtect().Dispose();
        }
        catch (DirtyLog.Native.KernelException e)
        {
            Assume.That(false, $"a userfaultfd that catches faults taken in the kernel is not available: {e.Message}");
        }
    }
}
