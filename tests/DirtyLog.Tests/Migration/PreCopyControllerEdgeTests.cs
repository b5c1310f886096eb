// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Migration;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>The pre-copy controller at the edges: a stalled link, a failing throttle callback, undefined options.</summary>
[TestFixture]
public class PreCopyControllerEdgeTests
{
    private static readonly TimeSpan Second = TimeSpan.FromSeconds(1);

    [Test]
    public void AStalledLinkSaturatesTheExpectedDowntimeInsteadOfOverflowing()
    {
        var controller = new PreCopyController();
        PreCopyDecision decision = controller.Observe(new RoundObservation(1UL << 28, 1, Second, Second));
        Assert.Multiple(() =>
        {
            Assert.That(decision.ExpectedDowntime, Is.EqualTo(TimeSpan.MaxValue));
            Assert.That(decision.Action, Is.EqualTo(PreCopyAction.Continue));
            Assert.That(controller.Bandwidth, Is.EqualTo(1.0));
        });
    }

    [Test]
    public void AnObservationWhoseThrottleCallbackThrowsChangesNothing()
    {
        int calls = 0;
        var controller = new PreCopyController(
            new PreCopyOptions { StallPolicy = StallPolicy.Throttle, StallRounds = 1, DowntimeLimit = TimeSpan.FromMilliseconds(1) },
            _ => throw new InvalidOperationException($"throttle call {++calls} failed"));
        controller.Observe(new RoundObservation(100, 1 << 20, Second, Second));
        double bandwidth = controller.Bandwidth;

        // No new minimum: the stall policy asks the throttle, which throws.
        Assert.Throws<InvalidOperationException>(() => controller.Observe(new RoundObservation(200, 4 << 20, Second, Second)));
        Assert.Multiple(() =>
        {
            Assert.That(controller.Bandwidth, Is.EqualTo(bandwidth), "the failed observation changed the bandwidth");
            Assert.That(controller.History, Has.Count.EqualTo(1));
        });

        // The same observation again meets the same state: the stall is still one round old.
        Assert.Throws<InvalidOperationException>(() => controller.Observe(new RoundObservation(200, 4 << 20, Second, Second)));
        Assert.That(calls, Is.EqualTo(2));
    }

    [Test]
    public void AnUndefinedStallPolicyIsRefusedByValidation()
    {
        var options = new PreCopyOptions { StallPolicy = (StallPolicy)42 };
        Assert.Throws<ArgumentOutOfRangeException>(options.Validate);
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new PreCopyController(options));
    }
}
