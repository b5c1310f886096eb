// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration.Sessions;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// The sample VMM's side of a destination session: it takes the vCPU's state and resumes the vCPU from it; without a
/// KVM guest (memory only) there is nothing to resume and the resume does nothing.
/// </summary>
internal sealed class DestinationHooks(DestinationVm vm, BootGuest? guest) : IMigrationDestinationHooks
{
    private ReadOnlyMemory<byte>? _vcpu;

    public ValueTask LoadStateAsync(MigrationStateSection section, CancellationToken cancellationToken)
    {
        if (section.Name != SourceHooks.VcpuSection || section.Version != SourceHooks.VcpuSectionVersion)
        {
            throw new NotSupportedException($"this VMM loads {SourceHooks.VcpuSection} version {SourceHooks.VcpuSectionVersion}, not {section.Name} version {section.Version}");
        }

        _vcpu = section.Data;
        return ValueTask.CompletedTask;
    }

    public ValueTask ResumeAsync(CancellationToken cancellationToken)
    {
        if (_vcpu is { } state)
        {
            vm.Resume(state, guest);
        }

        return ValueTask.CompletedTask;
    }
}
