// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using Microsoft.Win32.SafeHandles;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>
/// A VMM of the tests' own, written as a VMM author would, with its own ioctls, structs and memory and nothing from
/// DirtyLog: it opens <c>/dev/kvm</c>, creates the VM, its memslots and one vCPU, and runs a guest loop that writes a
/// value at the start of a range of pages, then halts. The adoption tests hand its descriptors to DirtyLog.
/// </summary>
/// <remarks>Not thread-safe: one test drives it; <see cref="Run"/> runs the vCPU on the calling thread.</remarks>
internal sealed unsafe partial class OwnVmm : IDisposable
{
    public const uint ExitHlt = 5;
    public const uint ExitIntr = 10;
    public const uint ExitDirtyRingFull = 31;
    public const ulong CodeAddress = 0x1000;

    private const uint KvmCreateVm = 0xAE01, KvmCheckExtension = 0xAE03, KvmGetVcpuMmapSize = 0xAE04;
    private const uint KvmCreateVcpu = 0xAE41, KvmSetTssAddr = 0xAE47, KvmRun = 0xAE80;
    private const uint KvmSetUserMemoryRegion = 0x4020AE46; // _IOW(KVMIO, 0x46, 32 bytes)
    private const uint KvmEnableCap = 0x4068AEA3;           // _IOW(KVMIO, 0xa3, 104 bytes)
    private const uint KvmGetRegs = 0x8090AE81, KvmSetRegs = 0x4090AE82;   // 144-byte kvm_regs
    private const uint KvmGetSregs = 0x8138AE83, KvmSetSregs = 0x4138AE84; // 312-byte kvm_sregs
    private const uint CapManualDirtyLogProtect2 = 168, CapDirtyLogRing = 192, CapDirtyLogRingAcqRel = 223;
    private const uint MemLogDirtyPages = 1;

    // The guest, 32-bit flat protected mode: for (esi = first; esi < edi; esi += 4096) [esi] = eax; hlt.
    private static readonly byte[] s_code = [0x89, 0x06, 0x81, 0xC6, 0x00, 0x10, 0x00, 0x00, 0x39, 0xFE, 0x72, 0xF4, 0xF4];

    private readonly SafeFileHandle _kvm;
    private readonly byte* _memory;
    private readonly byte* _run;
    private readonly int _runSize;

    /// <summary>Creates the VM with <paramref name="memoryBytes"/> of guest memory, its slots not yet set.</summary>
    public OwnVmm(ulong memoryBytes, bool manualProtect = false, uint ringEntries = 0)
    {
        MemoryBytes = memoryBytes;
        _kvm = File.OpenHandle("/dev/kvm", FileMode.Open, FileAccess.ReadWrite);
        Vm = new SafeFileHandle(Check(ioctl(_kvm, KvmCreateVm, 0), "KVM_CREATE_VM"), ownsHandle: true);
        ioctl(Vm, KvmSetTssAddr, unchecked((nint)0xfffbd000));
        if (manualProtect)
        {
            EnableCap(CapManualDirtyLogProtect2, 1);
        }

        if (ringEntries != 0)
        {
            uint cap = ioctl(Vm, KvmCheckExtension, (nint)CapDirtyLogRingAcqRel) > 0 ? CapDirtyLogRingAcqRel : CapDirtyLogRing;
            EnableCap(cap, ringEntries * 16UL);
        }

        _memory = (byte*)NativeMemory.AlignedAlloc((nuint)memoryBytes, 4096);
        NativeMemory.Clear(_memory, (nuint)memoryBytes);
        s_code.CopyTo(new Span<byte>(_memory + CodeAddress, s_code.Length));

        Vcpu = new SafeFileHandle(Check(ioctl(Vm, KvmCreateVcpu, 0), "KVM_CREATE_VCPU"), ownsHandle: true);
        _runSize = Check(ioctl(_kvm, KvmGetVcpuMmapSize, 0), "KVM_GET_VCPU_MMAP_SIZE");
        _run = (byte*)mmap(null, (nuint)_runSize, 3, 1, Vcpu, 0);
        if (_run == (byte*)-1)
        {
            throw new IOException($"mmap of kvm_run failed: errno {Marshal.GetLastPInvokeError()}");
        }

        EnterFlatProtectedMode();
    }

    /// <summary>The VM descriptor, the VMM's own.</summary>
    public SafeFileHandle Vm { get; }

    /// <summary>The vCPU descriptor, the VMM's own.</summary>
    public SafeFileHandle Vcpu { get; }

    public ulong MemoryBytes { get; }

    /// <summary>The host address of guest-physical <paramref name="guestAddress"/>.</summary>
    public ulong HostAddress(ulong guestAddress) => (ulong)_memory + guestAddress;

    /// <summary>The 8 bytes at <paramref name="guestAddress"/>, read from the host.</summary>
    public ulong Read(ulong guestAddress) => Volatile.Read(ref *(ulong*)(_memory + guestAddress));

    /// <summary><c>KVM_SET_USER_MEMORY_REGION</c>: creates, changes (flags) or, with size 0, deletes a slot.</summary>
    public void SetSlot(uint id, ulong guestAddress, ulong size, bool logDirtyPages)
    {
        ulong* region = stackalloc ulong[4];
        ((uint*)region)[0] = id;
        ((uint*)region)[1] = logDirtyPages ? MemLogDirtyPages : 0;
        region[1] = guestAddress;
        region[2] = size;
        region[3] = size == 0 ? 0 : HostAddress(guestAddress);
        Check(ioctl(Vm, KvmSetUserMemoryRegion, (nint)region), "KVM_SET_USER_MEMORY_REGION");
    }

    /// <summary>
    /// Runs the guest loop over pages [<paramref name="firstPage"/>, <paramref name="endPage"/>) writing
    /// <paramref name="value"/>, handing every exit other than HLT to <paramref name="onExit"/> (false: fail).
    /// </summary>
    public void Run(ulong firstPage, ulong endPage, uint value, Func<uint, bool> onExit)
    {
        ulong* regs = stackalloc ulong[18];
        Check(ioctl(Vcpu, KvmGetRegs, (nint)regs), "KVM_GET_REGS");
        regs[0] = value;                // rax
        regs[4] = firstPage * 4096 + 8; // rsi
        regs[5] = endPage * 4096;       // rdi
        regs[16] = CodeAddress;         // rip
        regs[17] = 2;                   // rflags
        Check(ioctl(Vcpu, KvmSetRegs, (nint)regs), "KVM_SET_REGS");
        for (int exits = 0; exits < 1_000_000; exits++)
        {
            if (ioctl(Vcpu, KvmRun, 0) < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == 4)
                {
                    continue; // EINTR
                }

                throw new IOException($"KVM_RUN failed: errno {errno}");
            }

            uint reason = *(uint*)(_run + 8);
            if (reason == ExitHlt)
            {
                return;
            }

            if (reason != ExitIntr && !onExit(reason))
            {
                throw new InvalidOperationException($"unexpected exit {reason}");
            }
        }

        throw new InvalidOperationException("the guest never halted");
    }

    public void Dispose()
    {
        if (_run != null)
        {
            munmap(_run, (nuint)_runSize);
        }

        Vcpu?.Dispose();
        Vm?.Dispose();
        _kvm.Dispose();
        NativeMemory.AlignedFree(_memory);
    }

    private void EnableCap(uint cap, ulong arg0)
    {
        byte* enable = stackalloc byte[104];
        new Span<byte>(enable, 104).Clear();
        *(uint*)enable = cap;
        *(ulong*)(enable + 8) = arg0;
        Check(ioctl(Vm, KvmEnableCap, (nint)enable), $"KVM_ENABLE_CAP({cap})");
    }

    private void EnterFlatProtectedMode()
    {
        // kvm_sregs: eight 24-byte kvm_segments (cs, ds, es, fs, gs, ss, tr, ldt), two 16-byte dtables, then cr0.
        byte* sregs = stackalloc byte[312];
        Check(ioctl(Vcpu, KvmGetSregs, (nint)sregs), "KVM_GET_SREGS");
        for (int segment = 0; segment < 6; segment++)
        {
            byte* s = sregs + (segment * 24);
            *(ulong*)s = 0;                               // base
            *(uint*)(s + 8) = 0xffffffff;                 // limit
            *(ushort*)(s + 12) = (ushort)(segment == 0 ? 8 : 16); // selector
            s[14] = (byte)(segment == 0 ? 11 : 3);        // type: code execute/read accessed, or data read/write accessed
            s[15] = 1;                                    // present
            s[16] = 0;                                    // dpl
            s[17] = 1;                                    // db: 32-bit
            s[18] = 1;                                    // s: code or data
            s[19] = 0;                                    // l
            s[20] = 1;                                    // g: 4 KiB granularity
        }

        *(ulong*)(sregs + (8 * 24) + 32) |= 1; // cr0.PE, paging off
        Check(ioctl(Vcpu, KvmSetSregs, (nint)sregs), "KVM_SET_SREGS");
    }

    private static int Check(int result, string what) =>
        result >= 0 ? result : throw new IOException($"{what} failed: errno {Marshal.GetLastPInvokeError()}");

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(SafeHandle fd, nuint request, nint arg);

    [LibraryImport("libc", SetLastError = true)]
    private static partial void* mmap(void* addr, nuint length, int prot, int flags, SafeHandle fd, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munmap(void* addr, nuint length);
}
