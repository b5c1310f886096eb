// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Testing;
using DirtyLog.Harvesting;
using DirtyLog.Mapping;
using DirtyLog.Migration;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Samples;

/// <summary>The getting-started guide's "run a harvest" example, line for line, run against emulated devices.</summary>
[TestFixture]
public class VmmWiringExampleTests
{
    [Test]
    public async Task TheWiringExampleMigratesMemoryExactly()
    {
        using var ram = new EmulatedGuestMemory(16UL << 20);
        using var copy = new EmulatedGuestMemory(16UL << 20);
        var iommu = new EmulatedIommu(ram);
        uint ioas = iommu.AllocateIoas();
        using var nic = new EmulatedDmaDevice(iommu.AllocateHwpt(ioas, dirtyTracking: false), DeviceDirtyLogLimits.Mlx5);
        using var vcpus = new EmulatedTracker("vcpus", new AddressRange(0, 16UL << 20)); // a KvmDirtyLogTracker in a real VMM
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        CancellationToken cancellationToken = CancellationToken.None;
        var reader = new PageStreamReader(pipe.Reader, copy.AsView());
        Task<PageStreamSummary> destination = reader.ReadToEndAsync(cancellationToken).AsTask();

        // snippet: wiring
        using var dirty = new SparseDirtyBitmap(addressWidth: 40);         // one shared guest-page bitmap
        var correlator = new Correlator(dirty);                             // IOVA -> guest pages
        IoAddressSpace space = correlator.AddAddressSpace(ioas, new EmulatedIoMapBackend(iommu, ioas));
        using var nicTracker = new DeviceTracker(nic);
        space.Attach(nicTracker);
        space.Map(iova: 0x1_0000_0000, guestAddress: 0, length: 16UL << 20); // the guest's vIOMMU maps go through here

        await using var harvester = new ParallelHarvester(dirty);
        harvester.Add(vcpus, TrackerFaultPolicy.FailRound);
        harvester.Add(nicTracker, space, TrackerFaultPolicy.MarkCoverageDirty);
        harvester.StartTracking();

        var stream = new PageStreamWriter(pipe.Writer, ram.AsView());       // any PipeWriter: a socket, a file (give it
                                                                            // segments of PageStreamWriter.RecommendedBufferSize)
        await stream.WriteRoundAsync([new DirtyRun(0, (16UL << 20) / 4096)], cancellationToken); // the first full pass
        var controller = new PreCopyController();
        PreCopyDecision decision;
        do
        {
            ram.WriteUInt64(0x3000, 1); vcpus.Write(0x3000);                // the guest runs...
            nic.DmaWriteUInt64(0x1_0000_5000, 2);                           // ...and the NIC writes
            using HarvestRound round = harvester.RunRound(deadline: null, cancellationToken);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            long bytes = await stream.WriteRoundAsync(round, cancellationToken);   // the round's runs, no copy
            round.Commit();                                                  // only now are these pages gone
            decision = controller.Observe(new RoundObservation(round.Pages, (ulong)bytes, clock.Elapsed, TimeSpan.FromSeconds(1)));
        }
        while (decision.Action == PreCopyAction.Continue);

        // Stop-copy: pause vCPUs and devices, then the final round (no re-protection) with a deadline, and the end.
        using (HarvestRound last = harvester.RunFinalRound(TimeSpan.FromMilliseconds(100), cancellationToken))
        {
            await stream.WriteRoundAsync(last, cancellationToken);
            last.Commit();
        }

        await stream.WriteEndAsync(cancellationToken);                      // the destination resumes the guest now
        await stream.WriteMemoryDigestAsync(cancellationToken);             // after the switch-over: no downtime
        // end of snippet
        await pipe.Writer.CompleteAsync();
        await destination;
        PageStreamSummary received = await reader.VerifyMemoryDigestAsync(cancellationToken);
        Assert.Multiple(() =>
        {
            Assert.That(decision.Action, Is.EqualTo(PreCopyAction.StopCopy));
            Assert.That(copy.AsView().Slice(0, 16 << 20).SequenceEqual(ram.AsView().Slice(0, 16 << 20)), Is.True);
            Assert.That(received.Rounds, Is.GreaterThanOrEqualTo(3));
            Assert.That(received.MemoryVerified, Is.True);
        });
    }
}
