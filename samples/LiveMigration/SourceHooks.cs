// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>The sample VMM's side of a source session: its vCPU and devices, its vCPU state.</summary>
internal sealed class SourceHooks(SourceVm vm) : IMigrationSourceHooks
{
    /// <summary>The vCPU state's section name and format version (KVM's structs as <see cref="SampleVmm"/> saves them).</summary>
    public const string VcpuSection = "vcpu0";

    public const uint VcpuSectionVersion = 1;

    /// <summary>When the guest was paused (a <see cref="Stopwatch"/> timestamp), 0 if it was not.</summary>
    public long PausedAt { get; private set; }

    public ValueTask PauseAsync(CancellationToken cancellationToken)
    {
        PausedAt = Stopwatch.GetTimestamp();
        vm.Pause();
        return ValueTask.CompletedTask;
    }

    public ValueTask ResumeAsync(CancellationToken cancellationToken)
    {
        vm.Resume();
        return ValueTask.CompletedTask;
    }

    public ValueTask<IReadOnlyList<MigrationStateSection>> SaveStateAsync(CancellationToken cancellationToken)
    {
        var sections = new List<MigrationStateSection>();
        foreach ((string name, byte[] state) in vm.SaveState())
        {
            sections.Add(new MigrationStateSection(name, VcpuSectionVersion, state));
        }

        return ValueTask.FromResult<IReadOnlyList<MigrationStateSection>>(sections);
    }

    /// <summary>
    /// Auto-converge, as QEMU's cpu-throttle with its defaults: the KVM guest's vCPU kept out 20% of the time at the
    /// first stall, 10 points more at each next, to 99%. The simulated writers keep their rate.
    /// </summary>
    public void Throttle(ThrottleRequest request)
    {
        vm.Throttle = vm.Throttle == 0 ? 0.2 : Math.Min(0.99, vm.Throttle + 0.1);
    }
}
