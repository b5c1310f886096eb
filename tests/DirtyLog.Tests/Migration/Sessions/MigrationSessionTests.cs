// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics.Metrics;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Harvesting;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>Whole migrations through the two sessions, judged page by page against the paused source.</summary>
[TestFixture]
[Category("Concurrency")]
public class MigrationSessionTests
{
    [Test]
    public async Task ARunningGuestMigratesWholeAndRunsOnTheDestinationOnly()
    {
        using var rig = new SessionRig();
        var phases = new List<MigrationPhase>();
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(onSourceProgress: p => phases.Add(p.Phase));

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), source.Error?.ToString());
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), destination.Error?.ToString());
            Assert.That(source.Error, Is.Null);
            Assert.That(destination.Error, Is.Null);
            Assert.That(destination.MemoryVerified, Is.True, "the source's digest matched every page");
            Assert.That(rig.Guest.Writes, Is.GreaterThan(0));
            Assert.That(source.RoundReports[0].Phase, Is.EqualTo(MigrationPhase.FirstPass));
            Assert.That(source.RoundReports[^1].Phase, Is.EqualTo(MigrationPhase.StopCopy));
            Assert.That(source.Rounds, Is.EqualTo(destination.Rounds));
            Assert.That(source.Decision!.Action, Is.EqualTo(PreCopyAction.StopCopy));
            Assert.That(source.Downtime, Is.GreaterThan(TimeSpan.Zero));
            Assert.That(source.StateSections, Is.EqualTo(new[] { "vcpu0", "uart" }));
            Assert.That(destination.StateSections, Is.EqualTo(new[] { "vcpu0", "uart" }));
            Assert.That(rig.Tracker.State, Is.EqualTo(DirtyLog.Tracking.DirtyTrackerState.Stopped), "tracking stops with the migration");
            Assert.That(phases.Distinct(), Is.SupersetOf(new[] { MigrationPhase.Handshake, MigrationPhase.FirstPass, MigrationPhase.PreCopy, MigrationPhase.StopCopy, MigrationPhase.AwaitingDestination, MigrationPhase.Ended }));
            Assert.That(source.Pages + source.ZeroPages, Is.GreaterThanOrEqualTo(rig.SourceMemory.Size / 4096), "the first pass alone covers every page");
        });
    }

    [Test]
    public void BadArgumentsAreRefusedWhenTheSessionIsMadeNotWhenItRuns()
    {
        using var rig = new SessionRig();
        using var duplex = new System.IO.MemoryStream();
        using var readOnly = new System.IO.MemoryStream([], writable: false);
        Assert.Multiple(() =>
        {
            Assert.That(() => new MigrationSource(rig.Harvester, rig.SourceMemory, duplex, rig.SourceHooks, new MigrationSourceOptions { PreCopy = new PreCopyOptions { PageSize = 3000 } }),
                Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("power of two"));
            Assert.That(() => new MigrationSource(rig.Harvester, rig.SourceMemory, readOnly, rig.SourceHooks),
                Throws.ArgumentException.With.Message.Contains("duplex"));
            Assert.That(() => new MigrationDestination(rig.DestinationMemory, readOnly, rig.DestinationHooks),
                Throws.ArgumentException.With.Message.Contains("duplex"));
            Assert.That(() => new MigrationSource(rig.Harvester, rig.SourceMemory, duplex, rig.SourceHooks, new MigrationSourceOptions { AnswerTimeout = TimeSpan.Zero }),
                Throws.InstanceOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("AnswerTimeout"));
        });
    }

    [Test]
    public async Task ADestinationSmallerThanTheSourceRefusesAtTheHandshakeAndTheGuestNeverStops()
    {
        using var rig = new SessionRig(sourceBytes: 16 * SessionRig.MiB, destinationBytes: 8 * SessionRig.MiB);
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnSource));
            Assert.That(source.Phase, Is.EqualTo(MigrationPhase.Handshake));
            Assert.That(source.Error!.RefusedByDestination, Is.True);
            Assert.That(source.Error.Message, Does.Contain("do not fit"));
            Assert.That(rig.SourceHooks.Pauses, Is.Zero, "refused before the guest paused");
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnSource));
            Assert.That(source.Pages, Is.Zero, "no page went before the destination accepted");
            Assert.That(rig.DestinationMemory.Slice(0, (int)rig.DestinationMemory.Size).IndexOfAnyExcept((byte)0), Is.EqualTo(-1), "nothing applied");
        });
    }

    [Test]
    public async Task AHeldSwitchOverWaitsPausedForTheVmmsGoThenCompletes()
    {
        using var rig = new SessionRig();
        rig.SourceOptions = rig.SourceOptions with { SwitchOver = SwitchOverPolicy.PauseBeforeSwitchOver };
        bool heldPaused = false;
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Phase == MigrationPhase.SwitchOverHeld)
            {
                heldPaused = !rig.Guest.IsRunning && !rig.DestinationHooks.Resumed;
                ThreadPool.QueueUserWorkItem(_ => rig.Source!.ContinueSwitchOver()); // the VMM says go from another thread
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(heldPaused, Is.True, "held with the source paused and nothing resumed");
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), source.Error?.ToString());
        });
    }

    [Test]
    public async Task AHeldSwitchOverCancelledResumesTheSource()
    {
        using var rig = new SessionRig();
        rig.SourceOptions = rig.SourceOptions with { SwitchOver = SwitchOverPolicy.PauseBeforeSwitchOver };
        using var cancel = new CancellationTokenSource();
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(sourceCancellation: cancel.Token, onSourceProgress: p =>
        {
            if (p.Phase == MigrationPhase.SwitchOverHeld)
            {
                ThreadPool.QueueUserWorkItem(_ => cancel.Cancel());
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnSource));
            Assert.That(source.Phase, Is.EqualTo(MigrationPhase.SwitchOverHeld));
            Assert.That(source.Error!.Message, Does.Contain("cancelled"));
            Assert.That(rig.SourceHooks.Resumes, Is.EqualTo(1));
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnSource));
        });
    }

    [Test]
    public async Task ABandwidthCapPacesPreCopy()
    {
        // 16 MiB with a quarter data: ~4 MiB of data pages; at 20 MB/s the first pass alone takes about 0.2 s.
        using var rig = new SessionRig();
        rig.SourceOptions = rig.SourceOptions with { BandwidthLimit = 20_000_000 };
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();
        MigrationRound first = source.RoundReports[0];

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(first.BytesSent / first.Send.TotalSeconds, Is.LessThan(20_000_000 * 1.1), "no faster than the cap");
        });
    }

    [Test]
    public async Task ProgressIsMeasuredAsItGoesAndOnTheMeter()
    {
        using var rig = new SessionRig();
        var sent = new List<long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == DirtyLogTelemetry.Name && instrument.Name == DirtyLogTelemetry.MigrationBytesSent)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) =>
        {
            lock (sent)
            {
                sent.Add(value);
            }
        });
        listener.Start();
        var rounds = new List<MigrationProgress>();
        (MigrationOutcome source, _) = await rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Round is not null)
            {
                rounds.Add(p);
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(rounds, Has.Count.EqualTo(source.Rounds));
            Assert.That(rounds.Select(r => r.BytesSent), Is.Ordered.Ascending);
            Assert.That(rounds.Skip(1).All(r => r.Bandwidth > 0), Is.True, "the bandwidth is known after the first pass");
            Assert.That(rounds.Skip(1).Take(rounds.Count - 2).All(r => r.DirtyRate > 0), Is.True, "each pre-copy round measured a dirty rate");
            lock (sent)
            {
                Assert.That(sent.Sum(), Is.GreaterThanOrEqualTo(source.RoundReports.Sum(r => r.BytesSent)), "every round's bytes reached the meter");
            }
        });
    }
}
