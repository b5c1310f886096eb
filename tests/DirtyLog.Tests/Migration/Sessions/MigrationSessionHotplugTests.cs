// Licensed under the MIT License. See LICENSE in the repository root.

using System.Linq;
using System.Threading.Tasks;
using DirtyLog.Migration.Sessions;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// Guest memory as several regions with holes, and memory plugged in and out while the guest migrates: judged region
/// by region and page by page against the paused source, and the guest on exactly one side.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class MigrationSessionHotplugTests
{
    private const ulong MiB = HotplugRig.MiB;

    // Below a hole, above it, and a small one higher up: as RAM around a PCI hole and a DIMM.
    private static readonly (ulong, ulong)[] TwoRegions = [(0, 6 * MiB), (10 * MiB, 4 * MiB)];
    private static readonly (ulong, ulong)[] ThreeRegions = [(0, 6 * MiB), (10 * MiB, 4 * MiB), (20 * MiB, 2 * MiB)];
    private static readonly (ulong Address, ulong Length) Dimm = (32 * MiB, 8 * MiB);

    public enum PlugMoment
    {
        /// <summary>Between the first pass and the first pre-copy harvest (from the session's progress).</summary>
        AfterTheFirstPass,

        /// <summary>While the first pass is being written (from the connection's write), with the guest writing.</summary>
        DuringTheFirstPass,
    }

    [Test]
    public async Task RegionsWithHolesBetweenThemMigrateByteForByte([Values(1, 2)] int seed)
    {
        using var rig = new HotplugRig(seed, destinationMapsOnDemand: false, ThreeRegions) { DestinationHasNoMemoryHooks = true };
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null, Describe(source, destination));
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), Describe(source, destination));
            Assert.That(destination.MemoryVerified, Is.True, "the digest covers every region");
            Assert.That(source.Pages + source.ZeroPages, Is.GreaterThanOrEqualTo(12 * MiB / 4096), "the first pass covers the regions");
            Assert.That(source.RoundReports[0].DirtyPages, Is.EqualTo(12 * MiB / 4096), "and not the holes");
        });
    }

    [Test]
    public async Task ARegionPluggedInWhileTheGuestMigratesIsSentWholeAndFollowed([Values] PlugMoment when, [Values(1, 2)] int seed)
    {
        using var rig = new HotplugRig(seed, destinationMapsOnDemand: true, TwoRegions);
        DirtyLog.Tracking.HostMemoryRegion dimm = rig.SourceRegion(Dimm.Address, Dimm.Length);
        (MigrationOutcome source, MigrationOutcome destination, bool plugged) = await RunChangingAsync(rig, when, () => rig.PlugIn(dimm));

        Assert.Multiple(() =>
        {
            Assert.That(plugged, Is.True);
            Assert.That(rig.Judge(source, destination), Is.Null, Describe(source, destination));
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), Describe(source, destination));
            Assert.That(destination.MemoryVerified, Is.True);
            Assert.That(rig.DestinationHooks.Added, Does.Contain(new AddressRange(Dimm.Address, Dimm.Length)), "the destination mapped the new region when it was announced");
            Assert.That(rig.DestinationHooks.Added, Has.Count.EqualTo(3));
        });
    }

    [Test]
    public async Task ARegionUnpluggedWhileTheGuestMigratesIsLetGoOnBothSides([Values] PlugMoment when)
    {
        using var rig = new HotplugRig(3, destinationMapsOnDemand: true, ThreeRegions);
        DirtyLog.Tracking.HostMemoryRegion gone = rig.SourceMap.Regions[2];
        (MigrationOutcome source, MigrationOutcome destination, bool unplugged) = await RunChangingAsync(rig, when, () => rig.Unplug(gone));

        Assert.Multiple(() =>
        {
            Assert.That(unplugged, Is.True);
            Assert.That(rig.Judge(source, destination), Is.Null, Describe(source, destination));
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), Describe(source, destination));
            Assert.That(destination.MemoryVerified, Is.True, "the digest leaves the removed region out on both sides");
            Assert.That(rig.DestinationHooks.Removed, Is.EqualTo(new[] { new AddressRange(gone.GuestAddress, gone.Length) }));
            Assert.That(rig.DestinationMap.Regions.Select(r => r.GuestAddress), Is.EqualTo(new[] { 0UL, 10 * MiB }));
        });
    }

    [Test]
    public async Task ADestinationThatMayNotHaveAPluggedRegionRefusesAndTheGuestRunsOnTheSource()
    {
        using var rig = new HotplugRig(4, destinationMapsOnDemand: true, TwoRegions);
        rig.DestinationHooks.Refuse = r => r.Start == Dimm.Address;
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Round is { Phase: MigrationPhase.FirstPass })
            {
                rig.PlugIn(rig.SourceRegion(Dimm.Address, Dimm.Length));
            }
        });

        AssertRefused(rig, source, destination, "may not have memory at 0x2000000");
    }

    [Test]
    public async Task ADestinationWhoseMemoryLacksAPluggedRegionRefusesBeforeAPageOfItIsWritten()
    {
        using var rig = new HotplugRig(5, destinationMapsOnDemand: false, TwoRegions) { DestinationHasNoMemoryHooks = true };
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Round is { Phase: MigrationPhase.FirstPass })
            {
                rig.PlugIn(rig.SourceRegion(Dimm.Address, Dimm.Length));
            }
        });

        AssertRefused(rig, source, destination, "are not inside one region of the destination's memory");
    }

    [Test]
    public async Task MemoryPluggedInAsTheGuestPausesGoesWithTheFinalHarvest()
    {
        using var rig = new HotplugRig(6, destinationMapsOnDemand: true, TwoRegions);
        rig.SourceHooks.WhilePausing = () => rig.PlugIn(rig.SourceRegion(Dimm.Address, Dimm.Length));
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null, Describe(source, destination));
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), Describe(source, destination));
            Assert.That(source.RoundReports[^1].DirtyPages, Is.GreaterThanOrEqualTo(Dimm.Length / 4096), "the final round sent the region whole");
        });
    }

    [Test]
    public async Task MemoryPluggedInAfterTheFinalHarvestFailsTheMigrationBeforeItsEnd()
    {
        using var rig = new HotplugRig(6, destinationMapsOnDemand: true, TwoRegions);
        rig.SourceHooks.WhileSaving = () => rig.SourceMap.Add(rig.SourceRegion(Dimm.Address, Dimm.Length));
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null, Describe(source, destination));
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnSource), Describe(source, destination));
            Assert.That(source.Phase, Is.EqualTo(MigrationPhase.StopCopy));
            Assert.That(source.Error!.Message, Does.Contain("while the guest was paused"));
            Assert.That(rig.Guest.IsRunning, Is.True, "the source resumed its guest: the destination never had an end");
        });
    }

    [Test]
    public async Task TheJudgeCatchesAVmmThatTellsTheGuestOfMemoryItNeverAddedToTheMap()
    {
        // The broken variant of the plug-in order: the slot is declared (the tracker logs the guest's writes there)
        // and the guest uses the memory, but the map never had it. The migration "succeeds" without the region, the
        // logged pages outside every region are skipped, and the judge must say what is missing.
        using var rig = new HotplugRig(7, destinationMapsOnDemand: true, TwoRegions);
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Round is { Phase: MigrationPhase.FirstPass })
            {
                rig.PlugIn(rig.SourceRegion(Dimm.Address, Dimm.Length), addToMap: false);
            }
        });

        Assume.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), Describe(source, destination));
        Assert.That(rig.Judge(source, destination), Is.EqualTo("the guest's region at 0x2000000 (+8,388,608) is missing at the destination"));
    }

    /// <summary>Runs the rig's migration and makes <paramref name="change"/> once, at <paramref name="when"/>; says whether it was made.</summary>
    private static async Task<(MigrationOutcome Source, MigrationOutcome Destination, bool Changed)> RunChangingAsync(HotplugRig rig, PlugMoment when, System.Action change)
    {
        bool changed = false;
        void Once()
        {
            if (!changed)
            {
                changed = true;
                change();
            }
        }

        // A first pass carries at least a quarter of 10 MiB in data pages: past its first MiB it is still running.
        (MigrationOutcome source, MigrationOutcome destination) = when == PlugMoment.AfterTheFirstPass
            ? await rig.RunAsync(onSourceProgress: p =>
            {
                if (p.Round is { Phase: MigrationPhase.FirstPass })
                {
                    Once();
                }
            })
            : await rig.RunAsync(beforeSourceWrite: (phase, written) =>
            {
                if (phase == MigrationPhase.FirstPass && written > (long)MiB)
                {
                    Once();
                }
            });
        return (source, destination, changed);
    }

    private static void AssertRefused(HotplugRig rig, MigrationOutcome source, MigrationOutcome destination, string reason)
    {
        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null, Describe(source, destination));
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnSource), Describe(source, destination));
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnSource));
            Assert.That(source.Error!.RefusedByDestination, Is.True, Describe(source, destination));
            Assert.That(source.Error.Message, Does.Contain(reason));
            Assert.That(destination.Error!.Message, Does.Contain(reason));
            Assert.That(rig.DestinationMap.Regions.Any(r => r.GuestAddress == Dimm.Address), Is.False);
        });
    }

    private static string Describe(MigrationOutcome source, MigrationOutcome destination) =>
        $"source: {source.End} in {source.Phase}: {source.Error?.Message}; destination: {destination.End} in {destination.Phase}: {destination.Error?.Message}";
}
