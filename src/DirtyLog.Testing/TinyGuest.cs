// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Native.Linux.Kvm;
using static DirtyLog.Native.Linux.Kvm.KvmConstants;

namespace DirtyLog.Testing;

/// <summary>
/// A tiny real guest on <c>/dev/kvm</c> for tests, benchmarks and samples: one vCPU in flat 32-bit protected mode (set
/// through <c>KVM_SET_SREGS</c>, no paging) running a 39-byte loop at GPA 0x1000 that writes an iteration number into the
/// first 8 bytes of pseudo-random pages of one memory slot, then halts.
/// </summary>
/// <remarks>
/// <para>The loop, with esi the generator state, edi the page mask, eax:edx the value and ecx the count:</para>
/// <code>
/// loop: imul esi, esi, 1103515245 ; add esi, 12345     ; a linear congruential generator
///       mov ebx, esi ; shr ebx, 8 ; and ebx, edi        ; a page number from its upper bits
///       cmp ebx, 2 ; jae ok ; add ebx, 2                ; never pages 0 and 1 (1 holds the code)
/// ok:   shl ebx, 12 ; mov [ebx], eax ; mov [ebx+4], edx ; the 64-bit value, at the start of the page
///       dec ecx ; jnz loop ; hlt
/// </code>
/// <para><see cref="PagesWrittenBy"/> replays the generator on the host, so tests know exactly which pages a run wrote.
/// A second loop at <see cref="StridedCodeAddress"/> writes evenly spaced pages (<see cref="WriteStrided"/>), for
/// benchmarks that need an exact dirty fraction:</para>
/// <code>
/// loop: mov [ebx], eax ; mov [ebx+4], edx ; add ebx, edi ; dec ecx ; jnz loop ; hlt
/// </code>
/// <para>The vCPU must be run from one thread at a time; <see cref="WriteUntilPaused"/> runs until another thread
/// pauses it.</para>
/// <para>Thread safety: not thread-safe: one thread runs the guest and reads its results; its trackers may be read from other threads while it is stopped.</para>
/// </remarks>
public sealed unsafe class TinyGuest : IDisposable
{
    /// <summary>The guest-physical address of the code.</summary>
    public const ulong CodeAddress = 0x1000;

    /// <summary>The guest-physical address of the strided loop.</summary>
    public const ulong StridedCodeAddress = CodeAddress + 64;

    private static readonly byte[] s_stridedCode =
    [
        0x89, 0x03,       // mov [ebx], eax
        0x89, 0x53, 0x04, // mov [ebx+4], edx
        0x01, 0xFB,       // add ebx, edi
        0x49,             // dec ecx
        0x75, 0xF6,       // jnz loop (-10)
        0xF4,             // hlt
    ];

    private static readonly byte[] s_code =
    [
        0x69, 0xF6, 0x6D, 0x4E, 0xC6, 0x41, // imul esi, esi, 0x41C64E6D
        0x81, 0xC6, 0x39, 0x30, 0x00, 0x00, // add esi, 12345
        0x89, 0xF3,                         // mov ebx, esi
        0xC1, 0xEB, 0x08,                   // shr ebx, 8
        0x21, 0xFB,                         // and ebx, edi
        0x83, 0xFB, 0x02,                   // cmp ebx, 2
        0x73, 0x03,                         // jae +3
        0x83, 0xC3, 0x02,                   // add ebx, 2
        0xC1, 0xE3, 0x0C,                   // shl ebx, 12
        0x89, 0x03,                         // mov [ebx], eax
        0x89, 0x53, 0x04,                   // mov [ebx+4], edx
        0x49,                               // dec ecx
        0x75, 0xDA,                         // jnz loop (-38)
        0xF4,                               // hlt
    ];

    // A guest that keeps exiting (a wedged dirty ring) must fail a test, not hang it.
    private const int MaxExitsPerWrite = 100_000;

    /// <summary>Exits in a row without one write in between after which <see cref="WriteUntilPaused"/> gives up.</summary>
    public const int MaxExitsWithoutProgress = 1_000;

    private long _exits;
    private long _liveWrites;

    private readonly KvmSystem _kvm;
    private uint _state;

    /// <summary>Creates the VM, its memory slot (slot 0 at GPA 0) and its vCPU.</summary>
    /// <param name="memoryBytes">The slot's size: a power of two from 64 KiB to 2 GiB (64 MiB or more for the tests).</param>
    /// <param name="seed">The generator's first state.</param>
    /// <param name="manualDirtyLogProtect">Enable <c>KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2</c> before the slot exists.</param>
    /// <param name="dirtyRingEntries">Enable a dirty ring of this many entries per vCPU (0: bitmaps), before the vCPU exists.</param>
    /// <param name="deviceMemoryBytes">
    /// Memory for emulated devices right after the slot, as slot 1 at GPA <paramref name="memoryBytes"/>, in the same
    /// host mapping (so guest memory is one contiguous range); the guest's loop never writes it. 0 for none.
    /// </param>
    /// <exception cref="KernelException">A KVM call failed (no /dev/kvm: ENOENT).</exception>
    public TinyGuest(ulong memoryBytes = 64UL << 20, uint seed = 1, bool manualDirtyLogProtect = false, uint dirtyRingEntries = 0, ulong deviceMemoryBytes = 0)
    {
        if (memoryBytes < (64UL << 10) || memoryBytes > (2UL << 30) || (memoryBytes & (memoryBytes - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(memoryBytes), memoryBytes, "The slot must be a power of two from 64 KiB to 2 GiB.");
        }

        _state = seed;
        _kvm = KvmSystem.Open();
        try
        {
            Vm = _kvm.CreateVm();
            Vm.SetTssAddress(0xfffbd000);
            if (manualDirtyLogProtect)
            {
                Vm.EnableManualDirtyLogProtect();
            }

            if (dirtyRingEntries != 0)
            {
                Vm.EnableDirtyRing(dirtyRingEntries);
            }

            if ((deviceMemoryBytes & 4095) != 0)
            {
                throw new ArgumentOutOfRangeException(nameof(deviceMemoryBytes), deviceMemoryBytes, "Device memory must be a multiple of 4096 bytes.");
            }

            Memory = new AnonymousMapping(memoryBytes + deviceMemoryBytes);
            Memory.Write(CodeAddress, s_code);
            Memory.Write(StridedCodeAddress, s_stridedCode);
            Slot = new KvmMemorySlot(0, 0, memoryBytes, (ulong)Memory.Address, LogDirtyPages: false);
            Vm.SetMemorySlot(Slot);
            if (deviceMemoryBytes != 0)
            {
                DeviceSlot = new KvmMemorySlot(1, memoryBytes, deviceMemoryBytes, (ulong)Memory.Address + memoryBytes, LogDirtyPages: false);
                Vm.SetMemorySlot(DeviceSlot);
            }
            Vcpu = Vm.CreateVcpu(0);
            EnterProtectedMode();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The VM.</summary>
    public KvmVm Vm { get; } = null!;

    /// <summary>The vCPU.</summary>
    public KvmVcpu Vcpu { get; } = null!;

    /// <summary>The guest's RAM, as this process sees it.</summary>
    public AnonymousMapping Memory { get; } = null!;

    /// <summary>The memory slot (as last set; dirty logging is off until a tracker turns it on).</summary>
    public KvmMemorySlot Slot { get; }

    /// <summary>Slot 1, the devices' memory, when asked for.</summary>
    public KvmMemorySlot? DeviceSlot { get; }

    /// <summary>Pages in the slot.</summary>
    public ulong Pages => Slot.Size / 4096;

    /// <summary>The generator's state before the next run.</summary>
    public uint State => _state;

    /// <summary>Exits of the vCPU other than HLT so far (ring-full exits and kicks among them); any thread may read it while the guest runs.</summary>
    public long Exits => Interlocked.Read(ref _exits);

    /// <summary>
    /// Writes of the running <see cref="WriteUntilPaused"/> as last seen at an exit (a lower bound while it runs, exact
    /// once it returned); any thread may read it while the guest runs.
    /// </summary>
    public long LiveWrites => Interlocked.Read(ref _liveWrites);

    /// <summary>
    /// Runs the strided loop: writes <paramref name="value"/> into pages <paramref name="firstPage"/>,
    /// <paramref name="firstPage"/> + <paramref name="stride"/>, ... (<paramref name="count"/> pages), then halts.
    /// The generator's <see cref="State"/> does not change.
    /// </summary>
    /// <param name="firstPage">The first page, 2 or more (pages 0 and 1 hold the code).</param>
    /// <param name="stride">Pages between writes, at least 1.</param>
    /// <param name="count">Pages to write, at least 1; the last must lie in the slot.</param>
    /// <param name="value">The value written into each page's first 8 bytes.</param>
    /// <param name="onExit">As for <see cref="Write"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">A page would fall outside the slot or on the code.</exception>
    public void WriteStrided(ulong firstPage, ulong stride, uint count, ulong value, Func<uint, bool>? onExit = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(firstPage, 2UL);
        ArgumentOutOfRangeException.ThrowIfZero(stride);
        ArgumentOutOfRangeException.ThrowIfZero(count);
        if (firstPage + (stride * (count - 1)) >= Pages)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"Page {firstPage} + {stride} x {count - 1} is past the slot's {Pages} pages.");
        }

        var regs = new kvm_regs
        {
            rip = StridedCodeAddress,
            rflags = 2,
            rax = (uint)value,
            rdx = value >> 32,
            rcx = count,
            rbx = firstPage * 4096,
            rdi = stride * 4096,
        };
        Vcpu.SetRegisters(regs);
        RunToHalt(onExit);
    }

    /// <summary>
    /// Runs the generator loop on the calling thread until <paramref name="pause"/> is cancelled from another thread,
    /// which kicks the vCPU out of the guest (<see cref="KvmVcpu.Kick"/>); then records the generator's state.
    /// </summary>
    /// <param name="value">The value written into each page's first 8 bytes.</param>
    /// <param name="pause">Cancelled to pause the guest.</param>
    /// <param name="onExit">As for <see cref="Write"/>.</param>
    /// <returns>The writes completed. The iteration interrupted by the kick may also have written its page.</returns>
    /// <remarks>Binds the vCPU's kick to the calling thread (<see cref="KvmVcpu.BindKickToCurrentThread"/>).</remarks>
    /// <exception cref="InvalidOperationException">
    /// The guest exited for a reason <paramref name="onExit"/> did not accept, or <see cref="MaxExitsWithoutProgress"/>
    /// times in a row without a write (a run loop spinning on a ring KVM will not let it enter).
    /// </exception>
    public ulong WriteUntilPaused(ulong value, CancellationToken pause, Func<uint, bool>? onExit = null)
    {
        if (!Vcpu.IsKickBoundToCurrentThread)
        {
            Vcpu.BindKickToCurrentThread();
        }

        ulong completed = 0;
        Interlocked.Exchange(ref _liveWrites, 0);
        StartGenerator(uint.MaxValue, value);
        using CancellationTokenRegistration registration = pause.Register(static vcpu => ((KvmVcpu)vcpu!).Kick(), Vcpu);
        uint lastCount = uint.MaxValue;
        int withoutProgress = 0;
        while (!pause.IsCancellationRequested)
        {
            uint exit = Vcpu.Run();
            if (exit == KVM_EXIT_HLT)
            {
                // Four billion writes done: start another batch from where the generator is.
                completed += uint.MaxValue;
                _state = (uint)Vcpu.GetRegisters().rsi;
                StartGenerator(uint.MaxValue, value);
                lastCount = uint.MaxValue;
                continue;
            }

            Interlocked.Increment(ref _exits);

            // The write count is in ecx: one register read per exit (exits are rare: kicks and ring-full) keeps a
            // live count, and a run loop that exits again and again without a write ends instead of spinning.
            uint count = (uint)Vcpu.GetRegisters().rcx;
            Interlocked.Exchange(ref _liveWrites, (long)(completed + (uint.MaxValue - count)));
            withoutProgress = count == lastCount ? withoutProgress + 1 : 0;
            lastCount = count;
            if (withoutProgress >= MaxExitsWithoutProgress)
            {
                throw new InvalidOperationException($"The tiny guest exited {withoutProgress} times in a row without a write (last reason {exit}, {Exits} exits in all).");
            }

            if (exit != KVM_EXIT_INTR && !(onExit?.Invoke(exit) ?? false))
            {
                throw new InvalidOperationException($"The tiny guest exited with KVM exit reason {exit}, not HLT.");
            }
        }

        kvm_regs regs = Vcpu.GetRegisters();
        completed += uint.MaxValue - (uint)regs.rcx;
        _state = (uint)regs.rsi;
        Interlocked.Exchange(ref _liveWrites, (long)completed);
        return completed;
    }

    /// <summary>Runs the guest until it has written <paramref name="writes"/> pages with <paramref name="value"/>, and halted.</summary>
    /// <param name="writes">How many writes (pages may repeat), at least 1.</param>
    /// <param name="value">The value written into each page's first 8 bytes.</param>
    /// <param name="onExit">
    /// Called for an exit other than HLT (such as <c>KVM_EXIT_DIRTY_RING_FULL</c>, 31): return <see langword="true"/> to
    /// run on (after harvesting the ring), <see langword="false"/> to fail.
    /// </param>
    /// <exception cref="InvalidOperationException">The guest exited for a reason <paramref name="onExit"/> did not accept.</exception>
    public void Write(uint writes, ulong value, Func<uint, bool>? onExit = null)
    {
        ArgumentOutOfRangeException.ThrowIfZero(writes);
        StartGenerator(writes, value);
        RunToHalt(onExit);
        _state = (uint)Vcpu.GetRegisters().rsi;
    }

    private void StartGenerator(uint writes, ulong value)
    {
        var regs = new kvm_regs
        {
            rip = CodeAddress,
            rflags = 2,
            rax = (uint)value,
            rdx = value >> 32,
            rcx = writes,
            rsi = _state,
            rdi = Pages - 1,
        };
        Vcpu.SetRegisters(regs);
    }

    private void RunToHalt(Func<uint, bool>? onExit)
    {
        for (int exits = 0; ; exits++)
        {
            uint exit = Vcpu.Run();
            if (exit == KVM_EXIT_HLT)
            {
                break;
            }

            Interlocked.Increment(ref _exits);
            if (exits == MaxExitsPerWrite)
            {
                throw new InvalidOperationException($"The tiny guest exited {MaxExitsPerWrite} times (last reason {exit}) without halting.");
            }

            if (exit != KVM_EXIT_INTR && !(onExit?.Invoke(exit) ?? false))
            {
                throw new InvalidOperationException($"The tiny guest exited with KVM exit reason {exit}, not HLT.");
            }
        }
    }

    /// <summary>The pages a run of <paramref name="writes"/> from generator state <paramref name="state"/> writes, in order.</summary>
    /// <param name="state">The state before the run (<see cref="State"/>).</param>
    /// <param name="writes">The number of writes.</param>
    /// <param name="pages">The slot's page count (a power of two).</param>
    /// <returns>The page numbers, with repeats.</returns>
    public static ulong[] PagesWrittenBy(uint state, uint writes, ulong pages)
    {
        var result = new ulong[writes];
        for (int i = 0; i < writes; i++)
        {
            state = unchecked((state * 1103515245u) + 12345u);
            ulong page = (state >> 8) & (pages - 1);
            result[i] = page < 2 ? page + 2 : page;
        }

        return result;
    }

    /// <summary>Closes the vCPU, the VM and the memory.</summary>
    public void Dispose()
    {
        Vcpu?.Dispose();
        Vm?.Dispose();
        Memory?.Dispose();
        _kvm.Dispose();
    }

    private void EnterProtectedMode()
    {
        kvm_sregs sregs = Vcpu.GetSpecialRegisters();
        var code = new kvm_segment { @base = 0, limit = 0xffffffff, selector = 8, type = 11, present = 1, dpl = 0, db = 1, s = 1, l = 0, g = 1 };
        kvm_segment data = code;
        data.type = 3;
        data.selector = 16;
        sregs.cs = code;
        sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
        sregs.cr0 |= 1; // protection on, paging off
        Vcpu.SetSpecialRegisters(sregs);
    }
}
