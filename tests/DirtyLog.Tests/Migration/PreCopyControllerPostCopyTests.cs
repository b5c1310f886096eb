// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Migration;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>The controller's switch to post-copy: only where pre-copy does not converge, never over a stop-copy that fits.</summary>
[TestFixture]
public class PreCopyControllerPostCopyTests
{
    // 50 MB/s measured: 300 ms of downtime fit 3,662 pages.
    private static RoundObservation Round(ulong dirtyPages) => new(dirtyPages, 25_000_000, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1));

    private static PreCopyDecision Last(PreCopyController controller, params ulong[] dirty)
    {
        PreCopyDecision decision = null!;
        foreach (ulong pages in dirty)
        {
            decision = controller.Observe(Round(pages));
            if (decision.Action is not (PreCopyAction.Continue or PreCopyAction.Throttle))
            {
                break;
            }
        }

        return decision;
    }

    [TestCase(StallPolicy.ForceStopCopy)]
    [TestCase(StallPolicy.Throttle)]
    public void AStalledDirtySetSwitchesToPostCopyInsteadOfItsPolicy(StallPolicy policy)
    {
        int throttled = 0;
        var controller = new PreCopyController(new PreCopyOptions { SwitchToPostCopy = true, StallRounds = 3, StallPolicy = policy }, _ => throttled++);
        PreCopyDecision decision = Last(controller, 50_000, 40_000, 41_000, 42_000, 43_000, 44_000);
        Assert.Multiple(() =>
        {
            Assert.That(decision.Action, Is.EqualTo(PreCopyAction.PostCopy));
            Assert.That(decision.Round, Is.EqualTo(5));
            Assert.That(decision.Reason, Does.Contain("does not converge").And.Contain("post-copy"));
            Assert.That(throttled, Is.Zero, "post-copy instead of throttling the guest");
        });
    }

    [Test]
    public void ASpentBudgetOverTheLimitSwitchesToPostCopy()
    {
        var controller = new PreCopyController(new PreCopyOptions { SwitchToPostCopy = true, MaxRounds = 3 });
        PreCopyDecision decision = Last(controller, 50_000, 30_000, 20_000);
        Assert.That(decision.Action, Is.EqualTo(PreCopyAction.PostCopy));
        Assert.That(decision.Reason, Does.Contain("round budget of 3 spent"));
    }

    [Test]
    public void AStopCopyThatFitsTheLimitStaysOne()
    {
        var controller = new PreCopyController(new PreCopyOptions { SwitchToPostCopy = true });
        Assert.That(Last(controller, 50_000, 10_000, 3_000).Action, Is.EqualTo(PreCopyAction.StopCopy));
    }

    [Test]
    public void AbortStaysAbortAndNothingFollowsAPostCopy()
    {
        var aborting = new PreCopyController(new PreCopyOptions { SwitchToPostCopy = true, StallRounds = 2, StallPolicy = StallPolicy.Abort });
        Assert.That(Last(aborting, 50_000, 40_000, 41_000, 42_000).Action, Is.EqualTo(PreCopyAction.Abort));

        var switching = new PreCopyController(new PreCopyOptions { SwitchToPostCopy = true, MaxRounds = 1 });
        Assert.That(switching.Observe(Round(50_000)).Action, Is.EqualTo(PreCopyAction.PostCopy));
        Assert.That(() => switching.Observe(Round(50_000)), Throws.InvalidOperationException);
    }

    [Test]
    public void WithoutTheOptionNothingSwitchesToPostCopy()
    {
        var controller = new PreCopyController(new PreCopyOptions { MaxRounds = 3 });
        Assert.That(Last(controller, 50_000, 30_000, 20_000).Action, Is.EqualTo(PreCopyAction.StopCopy));
    }
}
