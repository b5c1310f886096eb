// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using Microsoft.Win32.SafeHandles;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// The sample's own VMM, written as a VMM author writes one, with its own ioctls, structs and memory and nothing from
/// DirtyLog: it opens <c>/dev/kvm</c>, creates the VM, its memslots and one vCPU, boots the sample's guest (a boot
/// sector, <see cref="Boot"/>) and runs it until paused (<see cref="RunUntilPaused"/>), or runs a short test guest
/// over a range of pages (<see cref="Run"/>); it saves and restores the vCPU's state for a migration. DirtyLog only
/// ever sees its descriptors, borrowed (see <see cref="SourceVm"/>); the adoption tests drive it the same way.
/// </summary>
/// <remarks>
/// Thread safety: one thread runs the vCPU at a time; the cancellation that pauses <see cref="RunUntilPaused"/> may
/// come from any thread. The rest is for one thread at a time.
/// </remarks>
internal sealed unsafe partial class SampleVmm : IDisposable
{
    public const uint ExitHlt = 5;
    public const uint ExitIntr = 10;
    public const uint ExitDirtyRingFull = DirtyLog.Tracking.KvmDirtyRingTracker.RingFullExitReason; // the library says what it handles
    public const ulong CodeAddress = 0x1000;

    private const uint KvmCreateVm = 0xAE01, KvmCheckExtension = 0xAE03, KvmGetVcpuMmapSize = 0xAE04;
    private const uint KvmCreateVcpu = 0xAE41, KvmSetTssAddr = 0xAE47, KvmRun = 0xAE80;
    private const uint KvmSetUserMemoryRegion = 0x4020AE46; // _IOW(KVMIO, 0x46, 32 bytes)
    private const uint KvmEnableCap = 0x4068AEA3;           // _IOW(KVMIO, 0xa3, 104 bytes)
    private const uint KvmGetRegs = 0x8090AE81, KvmSetRegs = 0x4090AE82;   // 144-byte kvm_regs
    private const uint KvmGetSregs = 0x8138AE83, KvmSetSregs = 0x4138AE84; // 312-byte kvm_sregs
    private const uint KvmGetMsrs = 0xC008AE88, KvmSetMsrs = 0x4008AE89; // 8-byte kvm_msrs header, then entries
    private const uint KvmGetTscKhz = 0xAEA3;
    private const uint MsrIa32Tsc = 0x10;
    private const uint ExitIo = 2;
    private const uint KvmSetSignalMask = 0x4004AE8B; // _IOW(KVMIO, 0x8b, 4-byte kvm_signal_mask header)
    private const int KickSignal = 12;                // SIGUSR2, which .NET leaves alone
    private const long SysRtSigprocmask = 14, SysRtSigtimedwait = 128, SysGettid = 186, SysTgkill = 234;
    private const uint CapManualDirtyLogProtect2 = 168, CapDirtyLogRing = 192, CapDirtyLogRingAcqRel = 223;
    private const int RegsBytes = 144, SregsBytes = 312;

    private const uint MemLogDirtyPages = 1;

    // A test guest, 32-bit flat protected mode (the sample's own guest is the boot sector, Guest/boot.S). Range: for (esi = first; esi < edi; esi += 4096) [esi] = eax; hlt.
    private static readonly byte[] s_code = [0x89, 0x06, 0x81, 0xC6, 0x00, 0x10, 0x00, 0x00, 0x39, 0xFE, 0x72, 0xF4, 0xF4];


    private readonly SafeFileHandle _kvm;
    private readonly byte* _memory;
    private readonly byte* _run;
    private readonly int _runSize;

    /// <summary>Creates the VM with <paramref name="memoryBytes"/> of guest memory, its slots not yet set.</summary>
    public SampleVmm(ulong memoryBytes, bool manualProtect = false, uint ringEntries = 0)
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

        // Guest RAM: anonymous memory, zero until touched.
        _memory = (byte*)mmap_anonymous(null, (nuint)memoryBytes, 3, 0x22 | 0x4000, -1, 0); // MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE
        if (_memory == (byte*)-1)
        {
            throw new IOException($"mmap of guest memory failed: errno {Marshal.GetLastPInvokeError()}");
        }

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

    /// <summary>
    /// The vCPU's state as KVM gives it: <c>kvm_regs</c> (144 bytes), <c>kvm_sregs</c> (312 bytes), then the TSC
    /// (<c>IA32_TSC</c>, 8 bytes), so that the guest's clock goes on where it stopped. Call it with the vCPU stopped.
    /// </summary>
    public byte[] SaveVcpuState()
    {
        var state = new byte[RegsBytes + SregsBytes + 8];
        fixed (byte* p = state)
        {
            Check(ioctl(Vcpu, KvmGetRegs, (nint)p), "KVM_GET_REGS");
            Check(ioctl(Vcpu, KvmGetSregs, (nint)(p + RegsBytes)), "KVM_GET_SREGS");
            ulong* msrs = stackalloc ulong[3] { 1, MsrIa32Tsc, 0 }; // nmsrs = 1, pad; entry: index, reserved; data
            if (ioctl(Vcpu, KvmGetMsrs, (nint)msrs) != 1)
            {
                throw new IOException($"KVM_GET_MSRS(IA32_TSC) failed: errno {Marshal.GetLastPInvokeError()}");
            }

            *(ulong*)(p + RegsBytes + SregsBytes) = msrs[2];
        }

        return state;
    }

    /// <summary>Loads a state <see cref="SaveVcpuState"/> took (on another VM, after a migration).</summary>
    public void RestoreVcpuState(ReadOnlySpan<byte> state)
    {
        if (state.Length != RegsBytes + SregsBytes + 8)
        {
            throw new ArgumentException($"A vCPU state is {RegsBytes + SregsBytes + 8} bytes, not {state.Length}.", nameof(state));
        }

        fixed (byte* p = state)
        {
            Check(ioctl(Vcpu, KvmSetSregs, (nint)(p + RegsBytes)), "KVM_SET_SREGS");
            Check(ioctl(Vcpu, KvmSetRegs, (nint)p), "KVM_SET_REGS");
            ulong* msrs = stackalloc ulong[3] { 1, MsrIa32Tsc, *(ulong*)(p + RegsBytes + SregsBytes) };
            if (ioctl(Vcpu, KvmSetMsrs, (nint)msrs) != 1)
            {
                throw new IOException($"KVM_SET_MSRS(IA32_TSC) failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }
    }

    /// <summary>The vCPU's TSC frequency in kHz (<c>KVM_GET_TSC_KHZ</c>), to pace a guest.</summary>
    public uint TscKhz => (uint)Check(ioctl(Vcpu, KvmGetTscKhz, 0), "KVM_GET_TSC_KHZ");

    /// <summary>Loads a boot sector at 0x7c00 and points the vCPU at it in real mode, as a BIOS would hand over.</summary>
    public void Boot(ReadOnlySpan<byte> sector)
    {
        sector.CopyTo(new Span<byte>(_memory + 0x7c00, sector.Length));
        byte* sregs = stackalloc byte[SregsBytes];
        Check(ioctl(Vcpu, KvmGetSregs, (nint)sregs), "KVM_GET_SREGS");
        for (int segment = 0; segment < 6; segment++)
        {
            byte* s = sregs + (segment * 24);
            new Span<byte>(s, 24).Clear();
            *(uint*)(s + 8) = 0xffff;                       // limit
            s[14] = (byte)(segment == 0 ? 11 : 3);          // type
            s[15] = 1;                                      // present
            s[18] = 1;                                      // s: code or data
        }

        *(ulong*)(sregs + (8 * 24) + 32) &= ~1UL; // cr0.PE off: real mode
        Check(ioctl(Vcpu, KvmSetSregs, (nint)sregs), "KVM_SET_SREGS");
        ulong* regs = stackalloc ulong[18];
        new Span<ulong>(regs, 18).Clear();
        regs[16] = 0x7c00; // rip
        regs[17] = 2;      // rflags
        Check(ioctl(Vcpu, KvmSetRegs, (nint)regs), "KVM_SET_REGS");
    }

    /// <summary>Writes to the serial port seen by <see cref="RunUntilPaused"/> so far.</summary>
    public long SerialBytes => Interlocked.Read(ref _serialBytes);

    private long _serialBytes;

    /// <summary>
    /// The fraction of time the vCPU is kept out of the guest (0 to 0.99), as QEMU's cpu-throttle: every
    /// <see cref="ThrottleTimeslice"/> a timer kicks the vCPU out and it sleeps <c>throttle / (1 - throttle)</c>
    /// times what it ran since its last sleep before it enters again. Any thread may set it; the vCPU reads it at each kick.
    /// </summary>
    public double Throttle
    {
        get => Volatile.Read(ref _throttle);
        set => Volatile.Write(ref _throttle, Math.Clamp(value, 0, 0.99));
    }

    private double _throttle;

    /// <summary>How long the vCPU runs between two throttle sleeps: 10 ms, as QEMU's.</summary>
    public static readonly TimeSpan ThrottleTimeslice = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// The run loop of a guest that never halts: runs the vCPU on the calling thread, handling its port writes (the
    /// serial port is counted), until <paramref name="pause"/> is cancelled. The cancellation kicks the vCPU out of the
    /// guest at once, as QEMU does: <c>immediate_exit</c>, then a signal that this thread blocks and KVM unblocks only
    /// inside <c>KVM_RUN</c> (<c>KVM_SET_SIGNAL_MASK</c>), so no handler ever runs and the signal is consumed here.
    /// A dirty ring's full exit goes to <paramref name="onRingFull"/>, which reaps it: <see langword="false"/> (the ring is
    /// wedged) ends the loop, since KVM would refuse to enter again.
    /// </summary>
    public void RunUntilPaused(CancellationToken pause, Func<bool>? onRingFull = null)
    {
        ulong kick = 1UL << (KickSignal - 1), old;
        Check((int)syscall(SysRtSigprocmask, 0 /* SIG_BLOCK */, (long)&kick, (long)&old, 8), "rt_sigprocmask");
        byte* mask = stackalloc byte[4 + 8];
        *(uint*)mask = 8;
        *(ulong*)(mask + 4) = old & ~kick; // inside KVM_RUN: the thread's mask with the kick open
        Check(ioctl(Vcpu, KvmSetSignalMask, (nint)mask), "KVM_SET_SIGNAL_MASK");
        long tid = syscall(SysGettid, 0, 0, 0, 0);
        CancellationTokenRegistration kicker = pause.Register(() =>
        {
            Volatile.Write(ref *(_run + 1), (byte)1); // immediate_exit: a vCPU about to enter does not
            syscall(SysTgkill, Environment.ProcessId, tid, KickSignal, 0); // one inside the guest leaves it
        });
        // The throttle's timer kicks this thread only while the loop runs: the lock and the flag make sure no signal is
        // sent once the loop has ended (the thread's id could be another thread's by then, and SIGUSR2 kills a process
        // that does not block it), and the drain below consumes the last one sent.
        object throttleGate = new();
        bool looping = true;
        using var throttleTimer = new Timer(_ =>
        {
            lock (throttleGate)
            {
                if (looping && Throttle > 0)
                {
                    syscall(SysTgkill, Environment.ProcessId, tid, KickSignal, 0);
                }
            }
        }, null, ThrottleTimeslice, ThrottleTimeslice);
        long ranSince = Stopwatch.GetTimestamp();
        try
        {
            while (!pause.IsCancellationRequested)
            {
                if (ioctl(Vcpu, KvmRun, 0) < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == 4)
                    {
                        // EINTR: the pause (the loop condition says) or the throttle's kick.
                        ranSince = ThrottleSleep(kick, ranSince, pause);
                        continue;
                    }

                    throw new IOException($"KVM_RUN failed: errno {errno}");
                }

                uint reason = *(uint*)(_run + 8);
                if (reason == ExitIo)
                {
                    ushort port = *(ushort*)(_run + 34);
                    if (port == 0x3f8)
                    {
                        Interlocked.Increment(ref _serialBytes);
                    }

                    continue;
                }

                if (reason == ExitDirtyRingFull && onRingFull is not null)
                {
                    if (!onRingFull())
                    {
                        break;
                    }

                    continue;
                }

                if (reason != ExitIntr)
                {
                    throw new InvalidOperationException($"the guest exited with reason {reason}");
                }

                ranSince = ThrottleSleep(kick, ranSince, pause);
            }
        }
        finally
        {
            lock (throttleGate)
            {
                looping = false;
            }

            // The kick may still be on its way: the loop can end (an exit seen after the cancellation) before the
            // registration's callback set immediate_exit. Wait for the callback to finish, so that its flag and signal
            // are cleared below and do not make the next run's KVM_RUN return EINTR for good.
            kicker.Dispose();
        }

        // Consume a kick still pending in this thread, and let the next run enter.
        long* timeout = stackalloc long[2] { 0, 0 };
        while (syscall(SysRtSigtimedwait, (long)&kick, 0, (long)timeout, 8) > 0)
        {
        }

        Volatile.Write(ref *(_run + 1), (byte)0);
    }

    /// <summary>
    /// After a kick: consumes it (it stays pending, blocked, once the vCPU left the guest, and would make every
    /// <c>KVM_RUN</c> return at once) and, when throttled and the vCPU ran a timeslice since it last slept, sleeps
    /// its share. A pause ends the sleep at once.
    /// </summary>
    /// <returns>When the vCPU last woke from a throttle sleep.</returns>
    private long ThrottleSleep(ulong kick, long ranSince, CancellationToken pause)
    {
        if (pause.IsCancellationRequested)
        {
            return ranSince; // the loop ends; its drain consumes the kick
        }

        long* timeout = stackalloc long[2] { 0, 0 };
        while (syscall(SysRtSigtimedwait, (long)&kick, 0, (long)timeout, 8) > 0)
        {
        }

        // The sleep is the time run since the last one times throttle / (1 - throttle): the kicks come every
        // timeslice of wall time, sleeps included, so a fixed sleep a kick would keep the vCPU out less than asked.
        // Unthrottled, the time counts from now: a throttle set later must not charge the time run before it.
        double throttle = Throttle;
        if (throttle <= 0)
        {
            return Stopwatch.GetTimestamp();
        }

        TimeSpan ran = Stopwatch.GetElapsedTime(ranSince);
        if (ran < ThrottleTimeslice / 2)
        {
            return ranSince;
        }

        pause.WaitHandle.WaitOne(TimeSpan.FromTicks(Math.Min(ran.Ticks, 2 * ThrottleTimeslice.Ticks)) * (throttle / (1 - throttle)));
        while (syscall(SysRtSigtimedwait, (long)&kick, 0, (long)timeout, 8) > 0)
        {
        }

        return Stopwatch.GetTimestamp();
    }


    /// <summary>
    /// Guest memory pages resident in this process (<c>mincore</c>): what a snapshot without dirty tracking would have to
    /// copy, since residency says nothing of which pages were written since the last one.
    /// </summary>
    public ulong ResidentPages()
    {
        ulong pages = MemoryBytes / 4096;
        byte[] vec = new byte[pages];
        fixed (byte* v = vec)
        {
            Check(mincore(_memory, (nuint)MemoryBytes, v), "mincore");
        }

        ulong resident = 0;
        foreach (byte b in vec)
        {
            resident += (ulong)(b & 1);
        }

        return resident;
    }

    /// <summary>The host address of guest-physical <paramref name="guestAddress"/>.</summary>
    public ulong HostAddress(ulong guestAddress) => (ulong)_memory + guestAddress;

    /// <summary>Guest memory, from the host.</summary>
    public nint Memory => (nint)_memory;

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
        RunToHalt(onExit);
    }

    private void RunToHalt(Func<uint, bool> onExit)
    {
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
        munmap(_memory, (nuint)MemoryBytes);
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

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial void* mmap_anonymous(void* addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, long arg1, long arg2, long arg3, long arg4);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munmap(void* addr, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int mincore(void* addr, nuint length, byte* vec);
}
