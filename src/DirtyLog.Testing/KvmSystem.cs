// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.Versioning;
using DirtyLog.Native;
using static DirtyLog.Native.Linux.Kvm.KvmConstants;

namespace DirtyLog.Testing;

/// <summary>The KVM subsystem (<c>/dev/kvm</c>): capabilities and virtual machines.</summary>
/// <remarks>Thread safety: every member may be called from any thread (each is one ioctl on <c>/dev/kvm</c>); dispose once, after the last call.</remarks>
[SupportedOSPlatform("linux")]
public sealed unsafe class KvmSystem : IDisposable
{
    /// <summary>The device node.</summary>
    public const string DevicePath = "/dev/kvm";

    private KvmSystem(FileDescriptorHandle handle) => Handle = handle;

    /// <summary>The open descriptor.</summary>
    public FileDescriptorHandle Handle { get; }

    /// <summary>Whether <c>/dev/kvm</c> exists on this machine.</summary>
    public static bool IsAvailable => System.IO.File.Exists(DevicePath);

    /// <summary>Opens <c>/dev/kvm</c> and checks the API version (12).</summary>
    /// <returns>The open subsystem.</returns>
    /// <exception cref="KernelException">The node is missing or not accessible.</exception>
    /// <exception cref="NotSupportedException">The kernel speaks another KVM API version.</exception>
    public static KvmSystem Open()
    {
        var kvm = new KvmSystem(FileDescriptorHandle.Open(DevicePath));
        int version = kvm.Handle.Ioctl(KVM_GET_API_VERSION, nameof(KVM_GET_API_VERSION), null);
        if (version != KVM_API_VERSION)
        {
            kvm.Dispose();
            throw new NotSupportedException($"KVM API version {version}; DirtyLog speaks {KVM_API_VERSION}.");
        }

        return kvm;
    }

    /// <summary><c>KVM_CHECK_EXTENSION</c> on the system fd.</summary>
    /// <param name="capability">The capability number.</param>
    /// <returns>0 when absent; otherwise a capability-specific value.</returns>
    public int CheckExtension(uint capability) => Handle.Ioctl(KVM_CHECK_EXTENSION, nameof(KVM_CHECK_EXTENSION), (void*)capability);

    /// <summary><c>KVM_GET_VCPU_MMAP_SIZE</c>: bytes of each vCPU's <c>kvm_run</c> mapping.</summary>
    public int VcpuMmapSize => Handle.Ioctl(KVM_GET_VCPU_MMAP_SIZE, nameof(KVM_GET_VCPU_MMAP_SIZE), null);

    /// <summary><c>KVM_CREATE_VM</c>.</summary>
    /// <returns>The new VM.</returns>
    public KvmVm CreateVm()
    {
        int fd = Handle.Ioctl(KVM_CREATE_VM, nameof(KVM_CREATE_VM), null);
        return new KvmVm(FileDescriptorHandle.Own(fd, "kvm-vm"));
    }

    /// <summary>Closes <c>/dev/kvm</c>; VMs stay valid until disposed.</summary>
    public void Dispose() => Handle.Dispose();
}
