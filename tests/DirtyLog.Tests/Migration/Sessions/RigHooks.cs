// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>The source VMM of the rig: pauses and resumes the simulated guest, saves two sections, and fails where told.</summary>
internal sealed class RigSourceHooks(SimulatedGuest guest) : IMigrationSourceHooks
{
    public bool ThrowOnPause { get; set; }

    public bool ThrowOnSave { get; set; }

    public int Pauses { get; private set; }

    public int Resumes { get; private set; }

    public int Throttles { get; private set; }

    public IReadOnlyList<MigrationStateSection> Sections { get; set; } =
    [
        new("vcpu0", 3, new byte[] { 1, 2, 3, 4, 5 }),
        new("uart", 1, Array.Empty<byte>()),
    ];

    /// <summary>Run inside the pause hook, after the guest stopped (a test's gate).</summary>
    public Action? WhilePausing { get; set; }

    public ValueTask PauseAsync(CancellationToken cancellationToken)
    {
        Pauses++;
        guest.Pause();
        WhilePausing?.Invoke();
        return ThrowOnPause ? throw new InvalidOperationException("a device would not quiesce") : ValueTask.CompletedTask;
    }

    public ValueTask ResumeAsync(CancellationToken cancellationToken)
    {
        Resumes++;
        guest.Resume();
        return ValueTask.CompletedTask;
    }

    public ValueTask<IReadOnlyList<MigrationStateSection>> SaveStateAsync(CancellationToken cancellationToken) =>
        ThrowOnSave ? throw new InvalidOperationException("the vCPU's state could not be read") : ValueTask.FromResult(Sections);

    public void Throttle(ThrottleRequest request) => Throttles++;
}

/// <summary>The destination VMM of the rig: records the sections, resumes a flag, fails or holds where told.</summary>
internal sealed class RigDestinationHooks : IMigrationDestinationHooks
{
    private int _resumed;

    public List<MigrationStateSection> Loaded { get; } = [];

    public string? ThrowOnLoad { get; set; }

    public bool ThrowOnResume { get; set; }

    /// <summary>Run inside the resume hook before the guest runs (a test's gate).</summary>
    public Action? BeforeResume { get; set; }

    /// <summary>Run inside the resume hook once the guest runs here (a test's guest threads start).</summary>
    public Action? AfterResume { get; set; }

    /// <summary>Whether a guest runs here.</summary>
    public bool Resumed => Volatile.Read(ref _resumed) != 0;

    public ValueTask LoadStateAsync(MigrationStateSection section, CancellationToken cancellationToken)
    {
        if (section.Name == ThrowOnLoad)
        {
            throw new InvalidOperationException($"version {section.Version} of {section.Name} is not one this VMM loads");
        }

        Loaded.Add(section with { Data = section.Data.ToArray() });
        return ValueTask.CompletedTask;
    }

    public ValueTask ResumeAsync(CancellationToken cancellationToken)
    {
        BeforeResume?.Invoke();
        if (ThrowOnResume)
        {
            throw new InvalidOperationException("KVM_RUN failed on the restored vCPU");
        }

        if (Interlocked.Exchange(ref _resumed, 1) != 0)
        {
            throw new InvalidOperationException("resumed twice");
        }

        AfterResume?.Invoke();
        return ValueTask.CompletedTask;
    }
}
