// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Native;
using DirtyLog.Native.Linux.Kvm;
using static DirtyLog.Native.Linux.Kvm.KvmConstants;

namespace DirtyLog.Testing;

/// <summary>
/// What a VMM does to a VM before DirtyLog reads it, for tests and samples that have no VMM of their own: capabilities,
/// the dirty ring, the TSS, vCPUs. DirtyLog's product never calls these; a VMM does its own.
/// </summary>
/// <remarks>Thread safety: as the ioctls; call them while setting the VM up, before it runs.</remarks>
public static unsafe class KvmVmSetup
{
    private static readonly Lazy<int> s_vcpuMmapSize = new(() =>
    {
        using KvmSystem kvm = KvmSystem.Open();
        return kvm.VcpuMmapSize;
    });

    /// <summary><c>KVM_ENABLE_CAP</c> with one argument.</summary>
    /// <param name="vm">The VM.</param>
    /// <param name="capability">The capability.</param>
    /// <param name="argument">args[0].</param>
    public static void EnableCapability(this KvmVm vm, uint capability, ulong argument)
    {
        ArgumentNullException.ThrowIfNull(vm);
        var cap = new kvm_enable_cap { cap = capability };
        cap.args[0] = argument;
        vm.Handle.Ioctl(KVM_ENABLE_CAP, $"{nameof(KVM_ENABLE_CAP)}({capability})", &cap);
    }

    /// <summary>Enables <c>KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2</c> (without INITIALLY_SET): GET only copies, CLEAR re-protects.</summary>
    /// <param name="vm">The VM.</param>
    public static void EnableManualDirtyLogProtect(this KvmVm vm)
    {
        vm.EnableCapability(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
        vm.ManualDirtyLogProtect = true;
    }

    /// <summary>
    /// Enables the per-vCPU dirty ring (<c>KVM_CAP_DIRTY_LOG_RING_ACQ_REL</c> where offered, else <c>KVM_CAP_DIRTY_LOG_RING</c>).
    /// Must come before any vCPU is created.
    /// </summary>
    /// <param name="vm">The VM.</param>
    /// <param name="entries">Entries per vCPU: a power of two, 256 to 65,536 (16 bytes each).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="entries"/> is not a power of two in range.</exception>
    /// <exception cref="NotSupportedException">KVM offers no dirty ring.</exception>
    /// <exception cref="KernelException">KVM refused (EINVAL: vCPUs exist or the size was set; E2BIG: too large).</exception>
    public static void EnableDirtyRing(this KvmVm vm, uint entries)
    {
        ArgumentNullException.ThrowIfNull(vm);
        KvmVm.CheckRingEntries(entries, nameof(entries));
        uint cap = vm.CheckExtension(KVM_CAP_DIRTY_LOG_RING_ACQ_REL) > 0 ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL
            : vm.CheckExtension(KVM_CAP_DIRTY_LOG_RING) > 0 ? KVM_CAP_DIRTY_LOG_RING
            : throw new NotSupportedException("KVM offers no dirty ring on this host.");
        vm.EnableCapability(cap, entries * (ulong)sizeof(kvm_dirty_gfn));
        vm.DirtyRingEntries = entries;
    }

    /// <summary><c>KVM_SET_TSS_ADDR</c>, which x86 guests need before the first run on some hosts.</summary>
    /// <param name="vm">The VM.</param>
    /// <param name="address">A guest-physical address of three free pages.</param>
    public static void SetTssAddress(this KvmVm vm, ulong address)
    {
        ArgumentNullException.ThrowIfNull(vm);
        vm.Handle.TryIoctl(KVM_SET_TSS_ADDR, (void*)address, out _);
    }

    /// <summary><c>KVM_CREATE_VCPU</c>, the mapping of its <c>kvm_run</c>, and of its dirty ring when the VM has one.</summary>
    /// <param name="vm">The VM.</param>
    /// <param name="id">The vCPU id.</param>
    /// <returns>The vCPU.</returns>
    public static KvmVcpu CreateVcpu(this KvmVm vm, uint id)
    {
        ArgumentNullException.ThrowIfNull(vm);
        int fd = vm.Handle.Ioctl(KVM_CREATE_VCPU, nameof(KVM_CREATE_VCPU), (void*)id);
        return new KvmVcpu(FileDescriptorHandle.Own(fd, $"kvm-vcpu{id}"), s_vcpuMmapSize.Value, vm.DirtyRingEntries);
    }
}
