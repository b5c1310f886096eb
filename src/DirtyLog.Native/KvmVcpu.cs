// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.InteropServices;
using DirtyLog.Native.Linux.Kvm;
using static DirtyLog.Native.Linux.Kvm.KvmConstants;

namespace DirtyLog.Native;

/// <summary>A KVM vCPU and its <c>kvm_run</c> mapping.</summary>
/// <remarks>Run it from one thread; <see cref="RequestImmediateExit"/> may be set from another.</remarks>
public sealed unsafe class KvmVcpu : IDisposable
{
    private readonly int _runSize;
    private kvm_run* _run;

    internal KvmVcpu(FileDescriptorHandle handle, int runSize, uint ringEntries)
    {
        Handle = handle;
        _runSize = runSize;
        void* run = Interop.mmap(null, (nuint)runSize, Interop.PROT_READ | Interop.PROT_WRITE, Interop.MAP_SHARED, (int)handle.DangerousGetHandle(), 0);
        if (run == (void*)-1)
        {
            int errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw new KernelException("mmap", $"kvm_run of {handle.Path}", errno);
        }

        _run = (kvm_run*)run;
        if (ringEntries != 0)
        {
            try
            {
                DirtyRing = new KvmDirtyRing(handle, ringEntries);
            }
            catch
            {
                Dispose();
                throw;
            }
        }
    }

    /// <summary>The vCPU's dirty ring, when the VM enabled one before creating it.</summary>
    public KvmDirtyRing? DirtyRing { get; }

    /// <summary>The vCPU descriptor.</summary>
    public FileDescriptorHandle Handle { get; }

    /// <summary>Sets <c>kvm_run.immediate_exit</c>: the next (or a signalled current) <c>KVM_RUN</c> returns at once with EINTR.</summary>
    /// <param name="exit">Whether to exit immediately.</param>
    public void RequestImmediateExit(bool exit) => _run->immediate_exit = exit ? (byte)1 : (byte)0;

    /// <summary><c>KVM_RUN</c> until the guest exits.</summary>
    /// <returns>The exit reason (<c>KVM_EXIT_*</c>); <c>KVM_EXIT_INTR</c> (10) when interrupted (EINTR).</returns>
    public uint Run()
    {
        int result = Handle.TryIoctl(KVM_RUN, null, out int errno);
        if (result < 0)
        {
            if (errno == Errno.EINTR)
            {
                return KVM_EXIT_INTR;
            }

            throw new KernelException("ioctl", $"{nameof(KVM_RUN)} on {Handle.Path}", errno);
        }

        return _run->exit_reason;
    }

    internal kvm_regs GetRegisters()
    {
        kvm_regs regs;
        Handle.Ioctl(KVM_GET_REGS, nameof(KVM_GET_REGS), &regs);
        return regs;
    }

    internal void SetRegisters(kvm_regs regs) => Handle.Ioctl(KVM_SET_REGS, nameof(KVM_SET_REGS), &regs);

    internal kvm_sregs GetSpecialRegisters()
    {
        kvm_sregs sregs;
        Handle.Ioctl(KVM_GET_SREGS, nameof(KVM_GET_SREGS), &sregs);
        return sregs;
    }

    internal void SetSpecialRegisters(kvm_sregs sregs) => Handle.Ioctl(KVM_SET_SREGS, nameof(KVM_SET_SREGS), &sregs);

    /// <summary>Unmaps <c>kvm_run</c> and closes the vCPU.</summary>
    public void Dispose()
    {
        DirtyRing?.Dispose();
        if (_run != null)
        {
            Interop.munmap(_run, (nuint)_runSize);
            _run = null;
        }

        Handle.Dispose();
    }
}
