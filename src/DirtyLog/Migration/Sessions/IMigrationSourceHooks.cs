// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Migration.Sessions;

/// <summary>What the source VMM does for its migration session: pause, resume, save state, throttle.</summary>
/// <remarks>
/// <para>Thread safety: the session calls one hook at a time, from its own task (a thread-pool thread), never two at once; <see cref="Throttle"/> is called between rounds.
/// A hook that throws fails the migration in its phase: before the pause the guest keeps running; a
/// <see cref="PauseAsync"/> or <see cref="SaveStateAsync"/> that throws makes the session call
/// <see cref="ResumeAsync"/> (the end was not sent, so nothing can run elsewhere).</para>
/// </remarks>
public interface IMigrationSourceHooks
{
    /// <summary>
    /// Pauses every vCPU and device that writes guest memory, and returns once none does: the final harvest follows.
    /// A VMM whose dirty ring wedged has its vCPUs stopped already.
    /// </summary>
    /// <param name="cancellationToken">The session's cancellation.</param>
    /// <returns>A task that completes once nothing writes guest memory.</returns>
    ValueTask PauseAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Runs the source guest again after a pause: the migration failed before its end was sent, or the destination
    /// refused it. Never called on an unknown outcome. Called with no cancellation.
    /// </summary>
    /// <param name="cancellationToken">None: a resume is not cancelled.</param>
    /// <returns>A task that completes once the guest runs.</returns>
    ValueTask ResumeAsync(CancellationToken cancellationToken);

    /// <summary>While paused: the vCPU and device state to send, as named, versioned sections.</summary>
    /// <param name="cancellationToken">The session's cancellation.</param>
    /// <returns>The sections, each name once.</returns>
    ValueTask<IReadOnlyList<MigrationStateSection>> SaveStateAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Auto-converge: the controller asks to slow the guest, the whole of it by a fraction or each vCPU by its own
    /// dirty rate (<see cref="ThrottleRequest.VcpuDirtyRates"/>). A VMM that does not throttle ignores it.
    /// </summary>
    /// <param name="request">What the controller measured.</param>
    void Throttle(ThrottleRequest request);
}
