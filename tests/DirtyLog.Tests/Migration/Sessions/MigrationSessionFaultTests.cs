// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration.Sessions;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// Fault injection at every phase of a migration: the connection cut (a dead link, or a dead peer), a tracker that
/// faults, hooks that throw, cancellation. Each end is judged by <see cref="SessionRig.Judge"/>: the guest runs on
/// exactly one side, or the source holds it paused with the outcome unknown; a destination that runs it holds every
/// page of the source.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class MigrationSessionFaultTests
{
    [Test]
    public async Task AConnectionCutInTheFirstPassLeavesTheGuestRunningOnTheSource()
    {
        using var rig = new SessionRig();
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(
            cutBeforeWrite: (p, written) => p.Phase == MigrationPhase.FirstPass && written > (1 << 20));

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, MigrationPhase.FirstPass);
        Assert.That(rig.SourceHooks.Pauses, Is.Zero);
    }

    [Test]
    public async Task AConnectionCutMidRoundLeavesTheGuestRunningOnTheSource()
    {
        using var rig = new SessionRig();
        long roundStart = -1;
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(cutBeforeWrite: (p, written) =>
        {
            if (p.Phase != MigrationPhase.PreCopy)
            {
                return false;
            }

            roundStart = roundStart < 0 ? written : roundStart;
            return written > roundStart; // the first pre-copy round's second write
        });

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, MigrationPhase.PreCopy);
    }

    [Test]
    public async Task AConnectionCutDuringTheFinalHarvestResumesTheSource()
    {
        using var rig = new SessionRig();
        rig.SourceHooks.WhilePausing = () => rig.Connection!.Cut(); // after the pause, before the final harvest's read
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, MigrationPhase.StopCopy);
        Assert.That(rig.SourceHooks.Resumes, Is.EqualTo(1), "paused, no end sent: the source resumes");
    }

    [Test]
    public async Task AConnectionCutDuringStopCopyResumesTheSource()
    {
        using var rig = new SessionRig();
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(
            cutBeforeWrite: (p, _) => p.Phase == MigrationPhase.StopCopy && p.Round is { Phase: MigrationPhase.StopCopy }); // the state sections' write

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, MigrationPhase.StopCopy);
        Assert.That(rig.SourceHooks.Resumes, Is.EqualTo(1));
    }

    [Test]
    public async Task AConnectionCutAfterTheEndBeforeTheAnswerLeavesTheSourcePausedAndTheOutcomeUnknown()
    {
        using var rig = new SessionRig();
        rig.DestinationHooks.BeforeResume = () => rig.Connection!.Cut(); // the whole stream arrived; the answer cannot go
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.Unknown), source.Error?.ToString());
            Assert.That(source.Phase, Is.EqualTo(MigrationPhase.AwaitingDestination));
            Assert.That(rig.Guest.IsRunning, Is.False, "the source stays paused");
            Assert.That(rig.SourceHooks.Resumes, Is.Zero);
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), "it had everything, checked, and resumed");
            Assert.That(destination.Error!.Message, Does.Contain("could not be told"));
        });
    }

    [Test]
    public async Task AnAnswerThatNeverComesTimesOutUnknownWithTheSourcePaused()
    {
        using var rig = new SessionRig();
        rig.SourceOptions = rig.SourceOptions with { AnswerTimeout = TimeSpan.FromMilliseconds(300) };
        using var release = new ManualResetEventSlim();
        rig.DestinationHooks.BeforeResume = () => release.Wait(TimeSpan.FromSeconds(30)); // a destination that hangs in its resume
        Task<(MigrationOutcome, MigrationOutcome)> run = rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Phase == MigrationPhase.Ended)
            {
                release.Set(); // the source gave up waiting: let the destination go on
            }
        });
        (MigrationOutcome source, MigrationOutcome destination) = await run;

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.Unknown));
            Assert.That(source.Error!.Message, Does.Contain("no answer within"));
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination));
        });
    }

    [Test]
    public async Task ADestinationThatDiesMidRoundLeavesTheGuestRunningOnTheSource()
    {
        using var rig = new SessionRig();
        using var kill = new CancellationTokenSource();
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(destinationCancellation: kill.Token, onSourceProgress: p =>
        {
            if (p.Round is { Phase: MigrationPhase.PreCopy })
            {
                kill.Cancel();           // the destination VMM stops receiving ...
                rig.Connection!.Cut();   // ... and its process dies with its socket
            }
        });

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, null);
    }

    [Test]
    public async Task ASourceThatDiesMidRoundNeverHasItsPartialImageResumed()
    {
        using var rig = new SessionRig();
        using var kill = new CancellationTokenSource();
        // Mid-round in the first pass, which every migration has (a pre-copy round may never come: the controller
        // can go to stop-copy right after the first pass on a guest that wrote little): the source's VMM dies with
        // half a round on the wire.
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(sourceCancellation: kill.Token, cutBeforeWrite: (p, written) =>
        {
            if (p.Phase == MigrationPhase.FirstPass && written > (long)(2 * SessionRig.MiB)) // of at least 4 MiB of data pages
            {
                kill.Cancel();
                return true;
            }

            return false;
        });

        string both = Describe(source, destination);
        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null, both);
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnSource), both);
            Assert.That(rig.Connection!.IsCut, Is.True, "the source died mid-round");
            Assert.That(rig.DestinationHooks.Resumed, Is.False, "a partial image never runs");
            Assert.That(destination.Error?.Message, Does.Contain("not received whole"), both);
        });
    }

    [Test]
    public async Task ATrackerThatFaultsMidRoundIsRetriedAndTheMigrationCompletes()
    {
        using var rig = new SessionRig();
        bool injected = false;
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Round is { Phase: MigrationPhase.FirstPass } && !injected)
            {
                injected = true;
                rig.Tracker.FailNextReads(2); // the next two harvests fail; the harvester restarts it and marks its coverage
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), source.Error?.ToString());
            Assert.That(source.RoundReports[1].Retries, Is.EqualTo(2));
            Assert.That(destination.MemoryVerified, Is.True);
        });
    }

    [Test]
    public async Task ATrackerThatFaultsBeyondItsRetriesFailsThePreCopyWithTheGuestRunning()
    {
        using var rig = new SessionRig();
        rig.SourceOptions = rig.SourceOptions with { RoundRetries = 1 };
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Round is { Phase: MigrationPhase.FirstPass })
            {
                rig.Tracker.FailNextReads(10);
            }
        });

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, MigrationPhase.PreCopy);
        Assert.That(source.Error!.Message, Does.Contain("vcpus"));
    }

    [Test]
    public async Task APauseHookThatThrowsResumesTheSource()
    {
        using var rig = new SessionRig();
        rig.SourceHooks.ThrowOnPause = true;
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, MigrationPhase.StopCopy);
        Assert.That(source.Error!.Message, Does.Contain("quiesce"));
    }

    [Test]
    public async Task ASaveStateHookThatThrowsResumesTheSource()
    {
        using var rig = new SessionRig();
        rig.SourceHooks.ThrowOnSave = true;
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, MigrationPhase.StopCopy);
        Assert.That(source.Error!.Message, Does.Contain("state could not be read"));
    }

    [Test]
    public async Task AStateSectionTheDestinationCannotLoadIsRefusedAndTheSourceResumes()
    {
        using var rig = new SessionRig();
        rig.DestinationHooks.ThrowOnLoad = "uart";
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, MigrationPhase.AwaitingDestination);
        Assert.Multiple(() =>
        {
            Assert.That(source.Error!.RefusedByDestination, Is.True);
            Assert.That(source.Error.Message, Does.Contain("uart").And.Contain("version 1"));
            Assert.That(destination.Phase, Is.EqualTo(MigrationPhase.Resuming));
        });
    }

    [Test]
    public async Task AResumeHookThatThrowsIsRefusedAndTheSourceResumes()
    {
        using var rig = new SessionRig();
        rig.DestinationHooks.ThrowOnResume = true;
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, MigrationPhase.AwaitingDestination);
        Assert.That(source.Error!.Message, Does.Contain("KVM_RUN failed"));
    }

    [Test]
    public async Task ACancellationFromAnotherThreadDuringPreCopyLeavesTheGuestRunning()
    {
        using var rig = new SessionRig();
        using var cancel = new CancellationTokenSource();
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(sourceCancellation: cancel.Token, onSourceProgress: p =>
        {
            if (p.Round is { Phase: MigrationPhase.FirstPass })
            {
                ThreadPool.QueueUserWorkItem(_ => cancel.Cancel());
            }
        });

        AssertEnds(rig, source, destination, MigrationEnd.RunningOnSource, null);
        Assert.That(source.Error!.Message, Does.Contain("cancelled"));
    }

    [Test]
    public async Task TheJudgeCatchesAVmmThatResumesItsSourceOnAnUnknownOutcome()
    {
        // The broken variant: a VMM (or a session) that treats "no answer" as "not migrated" and resumes its guest.
        // The destination did resume: the guest now runs on both hosts, and the judge must say so.
        using var rig = new SessionRig();
        rig.DestinationHooks.BeforeResume = () => rig.Connection!.Cut();
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();
        Assume.That(source.End, Is.EqualTo(MigrationEnd.Unknown));
        await rig.SourceHooks.ResumeAsync(CancellationToken.None);

        Assert.That(rig.Judge(source, destination), Is.EqualTo("the guest runs on both hosts"));
    }

    [Test]
    public async Task TheJudgeCatchesADestinationThatRunsAnImageMissingAPage()
    {
        using var rig = new SessionRig();
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();
        Assume.That(rig.Judge(source, destination), Is.Null);
        rig.DestinationMemory.Slice(4096 * 7, 8).Fill(0xEE); // a page the stream would have lost

        Assert.That(rig.Judge(source, destination), Is.EqualTo("the destination runs the guest with page 7 unlike the source's"));
    }

    /// <summary>Both outcomes, for a failure message: what each side said and why.</summary>
    private static string Describe(MigrationOutcome source, MigrationOutcome destination) =>
        $"source: {source.End} in {source.Phase}: {source.Error?.Message}; destination: {destination.End} in {destination.Phase}: {destination.Error?.Message}";

    private static void AssertEnds(SessionRig rig, MigrationOutcome source, MigrationOutcome destination, MigrationEnd end, MigrationPhase? phase)
    {
        string both = Describe(source, destination);
        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null, both);
            Assert.That(source.End, Is.EqualTo(end), both);
            Assert.That(source.Error, Is.Not.Null);
            if (phase is { } expected)
            {
                Assert.That(source.Phase, Is.EqualTo(expected), both);
            }

            Assert.That(rig.Tracker.State, Is.EqualTo(DirtyLog.Tracking.DirtyTrackerState.Stopped), "tracking stopped cleanly");
            if (end == MigrationEnd.RunningOnSource)
            {
                Assert.That(rig.Guest.IsRunning, Is.True);
                Assert.That(rig.DestinationHooks.Resumed, Is.False);
                Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnSource), both);
            }
        });
    }
}
