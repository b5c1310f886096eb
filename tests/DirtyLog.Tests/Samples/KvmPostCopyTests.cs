// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics.Metrics;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Harvesting;
using DirtyLog.Samples.LiveMigration;
using DirtyLog.Tests.Infrastructure;
using DirtyLog.Tests.Migration.PostCopy;
using NUnit.Framework;

namespace DirtyLog.Tests.Samples;

/// <summary>
/// Post-copy with the sample's KVM guest in one process: its vCPU resumes on the destination before every page
/// arrived and faults on the missing ones inside <c>KVM_RUN</c> (the userfaultfd serves KVM's own touches of guest
/// memory, not only the VMM's threads); the guest's invariant, judged page by page after it ran on, and its progress
/// there decide.
/// </summary>
[TestFixture]
[NonParallelizable] // the meter listener sees every migration of the process
public class KvmPostCopyTests : KvmFixture
{
    [TestCase(0u)]
    [TestCase(65536u)]
    public async Task TheUnthrottledGuestSwitchesToPostCopyAndRunsOnTheDestinationWithItsInvariant(uint ringEntries)
    {
        PostCopyRig.RequireUserfaultfd();
        int postCopies = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name == DirtyLogTelemetry.PostCopyDuration)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "dirtylog.migration.side" && (string?)tag.Value == "destination")
                {
                    Interlocked.Increment(ref postCopies);
                }
            }
        });
        listener.Start();

        var options = new MigrationOptions
        {
            GuestBytes = 32UL << 20,
            DeviceBytes = 4UL << 20,
            PagesPerSecond = 0, // unthrottled, with a limit no stop-copy meets: pre-copy cannot converge
            DowntimeLimit = TimeSpan.FromMilliseconds(0.1),
            VcpuOnly = true,
            DirtyRingEntries = ringEntries,
            Connections = 2,
            PostCopy = true,
            Warmup = TimeSpan.FromMilliseconds(200),
        };

        (bool ok, _) = await Program.MigrateInProcessAsync(options);
        Assert.Multiple(() =>
        {
            Assert.That(ok, Is.True, "the guest ran on at the destination with its invariant intact, every page installed");
            Assert.That(postCopies, Is.EqualTo(1), "the destination ran post-copy");
        });
    }
}
