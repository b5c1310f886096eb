// Licensed under the MIT License. See LICENSE in the repository root.

using System.IO.Pipelines;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Migration;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Harvesting;

/// <summary>
/// <see cref="HarvesterOptions.ClearBeforeSend"/>: a page written between the round and its chunk's send goes once,
/// with that write, instead of again next round; a write after the send is still caught; a round never sent leaves
/// its pages logged.
/// </summary>
[TestFixture]
[Category("Unit")]
public class ClearBeforeSendTests
{
    private const ulong MiB = 1UL << 20;
    private const ulong A = 3 * MiB, B = 5 * MiB, C = 9 * MiB;

    [TestCase(true, 0UL)]
    [TestCase(false, 1UL)]
    public async Task APageWrittenBetweenTheRoundAndItsSendGoesOnceWithThatWrite(bool clearBeforeSend, ulong resentNextRound)
    {
        using var vm = new EmulatedKvmVm(16 * MiB, manualProtect: true);
        vm.AddSlot(0, 0, 16 * MiB);
        using var destination = new EmulatedGuestMemory(16 * MiB);
        using var shared = new SparseDirtyBitmap(40);
        using var tracker = new KvmDirtyLogTracker(vm, "vm");
        using var harvester = new ParallelHarvester(shared, new HarvesterOptions { ClearBeforeSend = clearBeforeSend });
        harvester.Add(tracker, TrackerFaultPolicy.FailRound);
        harvester.StartTracking();
        vm.Vcpus[0].Run([A, B], 1, out _);

        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        var writer = new PageStreamWriter(pipe.Writer, vm.Memory.AsView());
        using (HarvestRound round = harvester.RunRound(null, CancellationToken.None))
        {
            Assert.That(round.Pages, Is.EqualTo(2UL));
            vm.Vcpus[0].Run([A], 2, out _); // after the round's read, before the send
            await writer.WriteRoundAsync(round, CancellationToken.None);
            round.Commit();
        }

        vm.Vcpus[0].Run([C], 3, out _); // after the send: the next round must catch it
        await writer.WriteEndAsync(CancellationToken.None);
        await pipe.Writer.CompleteAsync();
        await new PageStreamReader(pipe.Reader, destination.AsView()).ReadToEndAsync(CancellationToken.None);

        using HarvestRound next = harvester.RunRound(null, CancellationToken.None);
        ulong[] pages = [.. next.Runs.ToArray().SelectMany(r => Enumerable.Range(0, (int)r.PageCount).Select(i => r.FirstPage + (ulong)i))];
        next.Commit();
        Assert.Multiple(() =>
        {
            Assert.That(destination.ReadUInt64(A), Is.EqualTo(2UL), "the page went with the write made before its send");
            Assert.That(pages, Does.Contain(C / 4096), "a write after the send is caught");
            Assert.That((ulong)pages.Count(p => p == A / 4096), Is.EqualTo(resentNextRound),
                clearBeforeSend ? "cleared just before it was sent: not again" : "cleared at the round: sent again");
        });
    }

    [Test]
    public void ARoundPutBackWithoutBeingSentLeavesItsPagesLogged()
    {
        using var vm = new EmulatedKvmVm(16 * MiB, manualProtect: true);
        vm.AddSlot(0, 0, 16 * MiB);
        using var shared = new SparseDirtyBitmap(40);
        using var tracker = new KvmDirtyLogTracker(vm, "vm");
        using var harvester = new ParallelHarvester(shared, new HarvesterOptions { ClearBeforeSend = true });
        harvester.Add(tracker, TrackerFaultPolicy.FailRound);
        harvester.StartTracking();
        vm.Vcpus[0].Run([A], 1, out _);
        using (HarvestRound round = harvester.RunRound(null, CancellationToken.None))
        {
            round.PutBack();
            Assert.That(() => round.ClearBeforeSend(A / 4096, 1), Throws.InvalidOperationException, "a settled round clears nothing");
        }

        using HarvestRound again = harvester.RunRound(null, CancellationToken.None);
        Assert.That(again.Runs.ToArray(), Is.EqualTo(new[] { new DirtyRun(A / 4096, 1) }));
        again.Commit();
    }
}
