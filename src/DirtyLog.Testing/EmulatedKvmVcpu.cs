// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Testing;

/// <summary>
/// One vCPU of an <see cref="EmulatedKvmVm"/>: it writes guest memory as a guest would (an 8-byte value per address),
/// and, in ring mode, owns a dirty ring that its writes push to, with KVM's rules.
/// </summary>
/// <remarks>
/// The host behaviour measured on nested, software-virtualised KVM can be reproduced on request:
/// <see cref="OvershootNextRun"/> lets the next run ignore the soft-full limit. Its pushes go on past a full ring as
/// KVM's do (over the oldest entries, which are lost), and a run that pushes more than a lap leaves the ring out of
/// step: what follows (a harvest that finds nothing, <see cref="EmulatedVcpuExit.DirtyRingFull"/> at every run once
/// the soft limit is counted again) comes from the kernel's rules, not from a switch. Thread safety: any thread; a run
/// is serialised with the VM's other operations (reaps, reads, slot changes) write by write.
/// </remarks>
public sealed class EmulatedKvmVcpu
{
    private readonly EmulatedKvmVm _vm;

    internal EmulatedKvmVcpu(EmulatedKvmVm vm, int id, uint ringEntries)
    {
        _vm = vm;
        Id = id;
        Ring = ringEntries == 0 ? null : new EmulatedDirtyRing(ringEntries);
    }

    /// <summary>The vCPU's index in <see cref="EmulatedKvmVm.Vcpus"/>, and its ring's in <see cref="EmulatedKvmVm.RingCount"/>.</summary>
    public int Id { get; }

    /// <summary>Makes the next run ignore the ring's soft limit: it pushes until the ring is full, and later writes of the run lose their entries.</summary>
    public bool OvershootNextRun { get; set; }

    /// <summary>Whether the ring overshot its soft limit (and writes lost their entries) at least once.</summary>
    public bool HasOvershot { get; internal set; }

    /// <summary>Entries lost because the ring was full during an overshoot: pushes over an entry not yet harvested.</summary>
    public long LostEntries { get; internal set; }

    /// <summary>Entries the ring holds as KVM counts them (pushed, not yet recycled by a reset); 0 without a ring.</summary>
    public uint RingUsed => Ring?.Used ?? 0;

    /// <summary>Entries the harvest skipped to get back in step after the ring was pushed past a lap.</summary>
    public long SkippedEntries => Ring?.Cursor.Skipped ?? 0;

    internal EmulatedDirtyRing? Ring { get; }

    /// <summary>Runs the guest for a batch of writes: each address gets <paramref name="value"/> (8 bytes), in order.</summary>
    /// <param name="guestAddresses">Guest-physical addresses, each inside a memory slot.</param>
    /// <param name="value">The value written.</param>
    /// <param name="written">How many writes were done before the run returned.</param>
    /// <returns>Why it returned: all done, or a full ring (reap, then run the rest).</returns>
    /// <exception cref="ArgumentException">An address is outside every slot (the guest would fault).</exception>
    public EmulatedVcpuExit Run(ReadOnlySpan<ulong> guestAddresses, ulong value, out int written) =>
        _vm.RunVcpu(this, guestAddresses, value, out written);
}
