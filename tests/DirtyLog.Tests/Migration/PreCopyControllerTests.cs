// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Migration;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>The pre-copy controller's decisions on scripted dirty-rate histories.</summary>
[TestFixture]
public class PreCopyControllerTests
{
    // 100 MB/s: 4,096-byte pages, 300 ms downtime fit 7,324 pages.
    private const ulong BytesPerSecond = 100_000_000;

    private static RoundObservation Round(ulong dirtyPages, Dictionary<string, ulong>? perTracker = null) =>
        new(dirtyPages, BytesPerSecond / 2, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1), perTracker);

    private static PreCopyAction[] Play(PreCopyController controller, params ulong[] dirty)
    {
        var actions = new List<PreCopyAction>();
        foreach (ulong pages in dirty)
        {
            PreCopyAction action = controller.Observe(Round(pages)).Action;
            actions.Add(action);
            if (action is PreCopyAction.StopCopy or PreCopyAction.Abort)
            {
                break;
            }
        }

        return [.. actions];
    }

    [Test]
    public void AConvergingGuestSwitchesOverOnceTheRestFitsTheDowntime()
    {
        var controller = new PreCopyController();
        Assert.That(Play(controller, 200_000, 60_000, 20_000, 7_000, 3_000), Is.EqualTo(new[] { PreCopyAction.Continue, PreCopyAction.Continue, PreCopyAction.Continue, PreCopyAction.StopCopy }));
        PreCopyDecision last = controller.History[^1];
        Assert.Multiple(() =>
        {
            Assert.That(last.ExpectedDowntime.TotalMilliseconds, Is.EqualTo(7_000 * 4096 * 1000.0 / BytesPerSecond).Within(0.5));
            Assert.That(last.Bandwidth, Is.EqualTo(BytesPerSecond).Within(1));
            Assert.That(last.Reason, Does.Contain("fits"));
        });
    }

    [Test]
    public void ConvergingRoundsGoOnPastTheFirstFitWhileEachHalvesTheDirtySet()
    {
        var controller = new PreCopyController(new PreCopyOptions { KeepCopyingWhileShrinkingTo = 0.6 });
        // 7,000 fits (287 ms) but is 3.5% of the last round; 3,000 is 43% of 7,000; 2,500 is 83% of 3,000: switch.
        Assert.That(Play(controller, 200_000, 7_000, 3_000, 2_500), Is.EqualTo(new[] { PreCopyAction.Continue, PreCopyAction.Continue, PreCopyAction.Continue, PreCopyAction.StopCopy }));
        Assert.Multiple(() =>
        {
            Assert.That(controller.History[1].Reason, Does.Contain("fits").And.Contain("one more round"));
            Assert.That(controller.History[2].Reason, Does.Contain("one more round"));
            Assert.That(controller.History[3].Reason, Does.Contain("fits the limit").And.Not.Contain("one more round"));
        });
    }

    [Test]
    public void ConvergingRoundsStopAtTheDowntimeGoalAndTheRoundBudget()
    {
        // 10 pages: 0.4 ms, under the 1 ms goal, however fast the set shrank.
        var atGoal = new PreCopyController(new PreCopyOptions { KeepCopyingWhileShrinkingTo = 1 });
        Assert.That(Play(atGoal, 200_000, 10), Is.EqualTo(new[] { PreCopyAction.Continue, PreCopyAction.StopCopy }));

        var budget = new PreCopyController(new PreCopyOptions { KeepCopyingWhileShrinkingTo = 1, MaxRounds = 3 });
        Assert.That(Play(budget, 200_000, 7_000, 3_000, 1_000), Is.EqualTo(new[] { PreCopyAction.Continue, PreCopyAction.Continue, PreCopyAction.StopCopy }));
        Assert.That(budget.History[^1].Reason, Does.Contain("fits"));

        var off = new PreCopyController(new PreCopyOptions { DowntimeGoal = TimeSpan.Zero });
        Assert.That(Play(off, 200_000, 7_000), Is.EqualTo(new[] { PreCopyAction.Continue, PreCopyAction.StopCopy }), "off by default: the first fit switches, as QEMU");
    }

    [TestCase(-0.1)]
    [TestCase(1.5)]
    [TestCase(double.NaN)]
    public void AShrinkFractionOutsideZeroToOneIsRefused(double fraction) =>
        Assert.That(() => new PreCopyController(new PreCopyOptions { KeepCopyingWhileShrinkingTo = fraction }),
            Throws.TypeOf<ArgumentOutOfRangeException>().With.Property("ParamName").EqualTo("KeepCopyingWhileShrinkingTo"));

    [TestCase(StallPolicy.ForceStopCopy, PreCopyAction.StopCopy)]
    [TestCase(StallPolicy.Abort, PreCopyAction.Abort)]
    public void AGuestThatStopsConvergingMeetsTheStallPolicy(StallPolicy policy, PreCopyAction expected)
    {
        var controller = new PreCopyController(new PreCopyOptions { StallRounds = 3, StallPolicy = policy });
        PreCopyAction[] actions = Play(controller, 100_000, 50_000, 52_000, 50_000, 51_000, 10_000);
        Assert.That(actions, Is.EqualTo(new[] { PreCopyAction.Continue, PreCopyAction.Continue, PreCopyAction.Continue, PreCopyAction.Continue, expected }));
        Assert.That(controller.History[^1].Reason, Does.Contain("not shrunk below 50,000 pages for 3 rounds"));
    }

    [Test]
    public void ThrottlingAsksTheCallbackWithTheBusiestWriterAndCopiesOn()
    {
        var requests = new List<ThrottleRequest>();
        var controller = new PreCopyController(new PreCopyOptions { StallRounds = 2, StallPolicy = StallPolicy.Throttle }, requests.Add);
        var perTracker = new Dictionary<string, ulong> { ["kvm"] = 40_000, ["nic"] = 10_000 };
        controller.Observe(Round(50_000, perTracker));
        controller.Observe(Round(50_000, perTracker));
        PreCopyDecision d = controller.Observe(Round(50_000, perTracker));
        Assert.Multiple(() =>
        {
            Assert.That(d.Action, Is.EqualTo(PreCopyAction.Throttle));
            Assert.That(requests, Has.Count.EqualTo(1));
            Assert.That(requests[0].TrackerRates.MaxBy(p => p.Value).Key, Is.EqualTo("kvm"));
            Assert.That(requests[0].TrackerRates["kvm"], Is.EqualTo(40_000).Within(1));
        });
        Assert.That(controller.Observe(Round(50_000, perTracker)).Action, Is.EqualTo(PreCopyAction.Continue), "the stall count starts again after a throttle");
        Assert.That(controller.Observe(Round(1_000)).Action, Is.EqualTo(PreCopyAction.StopCopy), "throttled enough, it converges");
    }

    [Test]
    public void TheThrottleIsToldEachVcpusDirtyRate()
    {
        var requests = new List<ThrottleRequest>();
        var controller = new PreCopyController(new PreCopyOptions { StallRounds = 2, StallPolicy = StallPolicy.Throttle }, requests.Add);
        double[] rates = [1_000, 45_000];
        for (int i = 0; i < 3; i++)
        {
            controller.Observe(Round(50_000) with { VcpuDirtyRates = rates });
        }

        Assert.Multiple(() =>
        {
            Assert.That(requests, Has.Count.EqualTo(1));
            Assert.That(requests[0].VcpuDirtyRates, Is.EqualTo(rates), "vCPU 1 dirties most: the one to slow down");
            Assert.That(Round(1).VcpuDirtyRates, Is.Empty, "unknown unless given");
        });
    }

    [Test]
    public void TheRoundBudgetEndsPreCopy()
    {
        var controller = new PreCopyController(new PreCopyOptions { MaxRounds = 4, StallRounds = 100 });
        Assert.That(Play(controller, 90_000, 80_000, 70_000, 60_000, 50_000), Is.EqualTo(new[] { PreCopyAction.Continue, PreCopyAction.Continue, PreCopyAction.Continue, PreCopyAction.StopCopy }));
        Assert.That(controller.History[^1].Reason, Does.Contain("budget"));
    }

    [Test]
    public void WithoutBandwidthTheDowntimeIsUnknownAndOnlyTheOtherRulesSwitchOver()
    {
        var controller = new PreCopyController(new PreCopyOptions { MaxRounds = 3 });
        PreCopyDecision d = controller.Observe(new RoundObservation(10, 0, TimeSpan.Zero, TimeSpan.FromSeconds(1)));
        Assert.Multiple(() =>
        {
            Assert.That(d.Action, Is.EqualTo(PreCopyAction.Continue));
            Assert.That(d.ExpectedDowntime, Is.EqualTo(TimeSpan.MaxValue));
            Assert.That(d.Reason, Does.Contain("unknown"));
        });
    }

    [Test]
    public void NothingIsDecidedAfterTheEndAndBadOptionsAreRefused()
    {
        var controller = new PreCopyController();
        controller.Observe(Round(10));
        Assert.Multiple(() =>
        {
            Assert.That(() => controller.Observe(Round(10)), Throws.InvalidOperationException);
            Assert.That(() => new PreCopyController(new PreCopyOptions { StallRounds = 0 }), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => new PreCopyController(new PreCopyOptions { StallPolicy = StallPolicy.Throttle }), Throws.ArgumentException);
        });
    }
}
