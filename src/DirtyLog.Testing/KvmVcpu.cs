// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading;
using System.Runtime.Versioning;
using DirtyLog.Native;
using DirtyLog.Native.Internal;
using DirtyLog.Native.Linux;
using DirtyLog.Native.Linux.Kvm;
using static DirtyLog.Native.Linux.Kvm.KvmConstants;

namespace DirtyLog.Testing;

/// <summary>A KVM vCPU and its <c>kvm_run</c> mapping.</summary>
/// <remarks>
/// <para>Run it from one thread at a time. <see cref="Kick"/> and <see cref="RequestImmediateExit"/> may be called from
/// any thread.</para>
/// <para><b>Pausing a running vCPU.</b> <c>kvm_run.immediate_exit</c> alone only stops the <i>next</i> entry: a vCPU
/// already inside <c>KVM_RUN</c> keeps running until the guest exits by itself. So, as QEMU does, the thread that runs
/// the vCPU first calls <see cref="BindKickToCurrentThread"/>: the kick signal is blocked in that thread and KVM is told
/// (<c>KVM_SET_SIGNAL_MASK</c>) to unblock it only inside <c>KVM_RUN</c>. <see cref="Kick"/> sets
/// <c>immediate_exit</c> and sends the signal to that thread with <c>tgkill</c>: a vCPU inside the guest leaves it at
/// once, a vCPU about to enter does not enter, and either way <see cref="Run"/> returns <c>KVM_EXIT_INTR</c>. No signal
/// handler ever runs: outside <c>KVM_RUN</c> the signal stays blocked, and <see cref="Run"/> consumes it
/// (<c>rt_sigtimedwait</c>) before returning.</para>
/// <para><b>The binding ends with its thread.</b> The bound thread is held by a thread pidfd (<c>pidfd_open</c> with
/// <c>PIDFD_THREAD</c>, Linux 6.9 and later), which names that thread and no other for as long as it is open: a kick
/// after the thread exited reaches no one (never a thread that reused its id), returns <see langword="false"/> and
/// ends the binding. On older kernels the kick checks that the bound managed thread is alive before <c>tgkill</c>, which
/// leaves the kernel's own window between that check and the signal. <see cref="UnbindKick"/> ends a binding
/// explicitly, as a run loop should before its thread goes on to other work.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed unsafe class KvmVcpu : IDisposable
{
    /// <summary>The signal <see cref="BindKickToCurrentThread"/> uses unless told otherwise: <c>SIGUSR2</c>, which .NET leaves alone.</summary>
    public const int DefaultKickSignal = SignalConstants.SIGUSR2;

    private readonly MemoryMappingHandle _runMapping;
    private readonly Lock _kickGate = new();
    private RetireGate _users; // uses of the kvm_run mapping in flight; disposal retires it before unmapping
    private kvm_run* _run;
    private int _kickThreadId; // 0: no thread bound; this and the two below are guarded by _kickGate
    private int _kickSignal;
    private FileDescriptorHandle? _kickPidfd; // the bound thread, where the kernel has thread pidfds
    private Thread? _kickThread;              // the bound managed thread, for kernels without them

    internal KvmVcpu(FileDescriptorHandle handle, int runSize, uint ringEntries)
    {
        Handle = handle;
        try
        {
            _runMapping = MemoryMappingHandle.MapShared(handle, (nuint)runSize, 0, "kvm_run");
        }
        catch
        {
            handle.Dispose();
            throw;
        }

        _run = (kvm_run*)_runMapping.Pointer;
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

    /// <summary>
    /// Sets <c>kvm_run.immediate_exit</c>: the next <c>KVM_RUN</c> returns at once with EINTR (a running one is not
    /// stopped: see <see cref="Kick"/>). <see cref="Run"/> clears it when it returns <c>KVM_EXIT_INTR</c>.
    /// </summary>
    /// <param name="exit">Whether to exit immediately.</param>
    /// <exception cref="ObjectDisposedException">The vCPU was disposed.</exception>
    public void RequestImmediateExit(bool exit)
    {
        ObjectDisposedException.ThrowIf(!_users.TryEnter(), this);
        try
        {
            Volatile.Write(ref _run->immediate_exit, exit ? (byte)1 : (byte)0);
        }
        finally
        {
            _users.Exit();
        }
    }

    /// <summary>The thread <see cref="Kick"/> signals, 0 when none is bound.</summary>
    public int KickThreadId
    {
        get
        {
            lock (_kickGate)
            {
                return _kickThreadId;
            }
        }
    }

    /// <summary>Whether the calling thread is the one <see cref="Kick"/> signals.</summary>
    public bool IsKickBoundToCurrentThread
    {
        get
        {
            lock (_kickGate)
            {
                return _kickThreadId != 0 && _kickThreadId == CurrentThreadId();
            }
        }
    }

    /// <summary>
    /// Makes the calling thread the one that runs this vCPU and that <see cref="Kick"/> interrupts: blocks
    /// <paramref name="signal"/> in this thread and has KVM unblock it only inside <c>KVM_RUN</c>
    /// (<c>KVM_SET_SIGNAL_MASK</c>). Binding again from another thread moves the kick there.
    /// </summary>
    /// <param name="signal">A signal nothing else in the process handles; <see cref="DefaultKickSignal"/> by default.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="signal"/> is not 1 to 64.</exception>
    /// <exception cref="KernelException">The kernel refused the mask.</exception>
    /// <remarks>The signal stays blocked in this thread afterwards (a blocked signal is harmless).</remarks>
    public void BindKickToCurrentThread(int signal = DefaultKickSignal)
    {
        if (signal is < 1 or > 64)
        {
            throw new ArgumentOutOfRangeException(nameof(signal), signal, "A Linux signal number is 1 to 64.");
        }

        ulong kick = 1UL << (signal - 1);
        ulong old;
        if (Interop.syscall(SyscallNumbers.__NR_rt_sigprocmask, SignalConstants.SIG_BLOCK, (long)&kick, (long)&old, sizeof(ulong)) < 0)
        {
            throw KernelErrors.Last("rt_sigprocmask", $"blocking signal {signal} for {Handle.Path}");
        }

        // Inside KVM_RUN the thread's mask becomes this one: what it was, with the kick signal open.
        byte* buffer = stackalloc byte[sizeof(kvm_signal_mask) + sizeof(ulong)];
        ((kvm_signal_mask*)buffer)->len = sizeof(ulong);
        *(ulong*)(buffer + sizeof(kvm_signal_mask)) = old & ~kick;
        Handle.Ioctl(KVM_SET_SIGNAL_MASK, nameof(KVM_SET_SIGNAL_MASK), buffer);

        int tid = CurrentThreadId();
        FileDescriptorHandle? pidfd = OpenThreadPidfd(tid);
        lock (_kickGate)
        {
            UnbindLocked();
            _kickThreadId = tid;
            _kickSignal = signal;
            _kickPidfd = pidfd;
            _kickThread = Thread.CurrentThread;
        }

        DrainKicks();
    }

    /// <summary>Ends the binding made by <see cref="BindKickToCurrentThread"/>, from any thread; later kicks signal no one.</summary>
    /// <returns>Whether a thread was bound.</returns>
    /// <remarks>
    /// Called on the bound thread, it also consumes a kick still pending there. The signal stays blocked in that thread
    /// (harmless), and KVM keeps the signal mask for a later <c>KVM_RUN</c>.
    /// </remarks>
    public bool UnbindKick()
    {
        DrainKicks();
        lock (_kickGate)
        {
            bool bound = _kickThreadId != 0;
            UnbindLocked();
            return bound;
        }
    }

    /// <summary>
    /// Stops the vCPU as soon as possible, from any thread: sets <c>immediate_exit</c>, then signals the bound thread
    /// (if any) so that a <c>KVM_RUN</c> in progress returns. The run loop sees <c>KVM_EXIT_INTR</c> from <see cref="Run"/>
    /// and must check its own reason to stop (set it before kicking).
    /// </summary>
    /// <returns>
    /// Whether a live bound thread was signalled. <see langword="false"/> when no thread is bound, or the bound one has
    /// exited (the binding then ends): only <c>immediate_exit</c> was set, so the next <c>KVM_RUN</c> returns at once.
    /// </returns>
    /// <exception cref="KernelException">The signal could not be sent for another reason than the thread being gone.</exception>
    /// <exception cref="ObjectDisposedException">The vCPU was disposed.</exception>
    public bool Kick()
    {
        RequestImmediateExit(true);
        lock (_kickGate)
        {
            // Under the gate, so that no unbinding lets the thread (or its pidfd) go while a signal is on its way.
            if (_kickThreadId == 0)
            {
                return false;
            }

            if (TrySignalBoundThreadLocked(out Errno errno))
            {
                return true;
            }

            if (errno == Errno.ESRCH)
            {
                UnbindLocked();
                return false;
            }

            throw KernelErrors.From(_kickPidfd is null ? "tgkill" : "pidfd_send_signal", $"kick of {Handle.Path}", errno);
        }
    }

    /// <summary>Sends the kick signal to the bound thread (under the kick gate, with a thread bound).</summary>
    /// <returns>Whether it was sent; if not, <paramref name="errno"/> says why (<c>ESRCH</c>: the thread is gone).</returns>
    private bool TrySignalBoundThreadLocked(out Errno errno)
    {
        Debug.Assert(_kickGate.IsHeldByCurrentThread, "the binding is guarded by the kick gate");
        long result;
        if (_kickPidfd is { } pidfd)
        {
            result = Interop.syscall(SyscallNumbers.__NR_pidfd_send_signal, pidfd, _kickSignal, 0, PidfdConstants.PIDFD_SIGNAL_THREAD);
        }
        else if (_kickThread is { IsAlive: true })
        {
            result = Interop.syscall(SyscallNumbers.__NR_tgkill, Environment.ProcessId, _kickThreadId, _kickSignal, 0);
        }
        else
        {
            errno = Errno.ESRCH;
            return false;
        }

        errno = result < 0 ? (Errno)Marshal.GetLastPInvokeError() : 0;
        return result >= 0;
    }

    /// <summary><c>KVM_RUN</c> until the guest exits.</summary>
    /// <returns>
    /// The exit reason (<c>KVM_EXIT_*</c>); <c>KVM_EXIT_INTR</c> (10) when interrupted (EINTR: a <see cref="Kick"/>,
    /// <c>immediate_exit</c>, or another signal), after clearing <c>immediate_exit</c> and consuming pending kicks.
    /// </returns>
    /// <exception cref="ObjectDisposedException">The vCPU was disposed.</exception>
    public uint Run()
    {
        ObjectDisposedException.ThrowIf(!_users.TryEnter(), this);
        try
        {
            int result = Handle.TryIoctl(KVM_RUN, null, out Errno errno);
            if (result < 0)
            {
                if (errno == Errno.EINTR)
                {
                    Volatile.Write(ref _run->immediate_exit, 0);
                    DrainKicks();
                    return KVM_EXIT_INTR;
                }

                throw KernelErrors.From("ioctl", $"{nameof(KVM_RUN)} on {Handle.Path}", errno);
            }

            return _run->exit_reason;
        }
        finally
        {
            _users.Exit();
        }
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

    /// <summary>Consumes the kick signals pending on the calling thread, if it is the bound one.</summary>
    private void DrainKicks()
    {
        if (!IsKickBoundToCurrentThread)
        {
            return;
        }

        int signal = Volatile.Read(ref _kickSignal);

        ulong set = 1UL << (signal - 1);
        long zero = 0; // a struct timespec of { 0, 0 }: poll
        long* timeout = stackalloc long[2] { zero, zero };
        while (Interop.syscall(SyscallNumbers.__NR_rt_sigtimedwait, (long)&set, 0, (long)timeout, sizeof(ulong)) > 0)
        {
        }
    }

    private static int CurrentThreadId() => (int)Interop.syscall(SyscallNumbers.__NR_gettid, 0);

    /// <summary>A pidfd naming thread <paramref name="tid"/> alone; <see langword="null"/> where the kernel has no thread pidfds (before 6.9).</summary>
    private static FileDescriptorHandle? OpenThreadPidfd(int tid)
    {
        long fd = Interop.syscall(SyscallNumbers.__NR_pidfd_open, tid, PidfdConstants.PIDFD_THREAD, 0, 0);
        if (fd < 0)
        {
            Errno errno = (Errno)Marshal.GetLastPInvokeError();
            if (errno is Errno.EINVAL or Errno.ENOSYS)
            {
                return null;
            }

            throw KernelErrors.From("pidfd_open", $"thread {tid}", errno);
        }

        return FileDescriptorHandle.Own((int)fd, $"pidfd:{tid}");
    }

    private void UnbindLocked()
    {
        Debug.Assert(_kickGate.IsHeldByCurrentThread, "the binding is guarded by the kick gate");
        _kickThreadId = 0;
        _kickThread = null;
        _kickPidfd?.Dispose();
        _kickPidfd = null;
    }

    /// <summary>Unmaps <c>kvm_run</c> and closes the vCPU; may race the other members.</summary>
    /// <remarks>
    /// Later calls throw <see cref="ObjectDisposedException"/>; the mapping is unmapped only after every use in flight
    /// has ended. A <see cref="Run"/> in progress on another thread is hurried out first: <c>immediate_exit</c> is set
    /// and, only then (a signal to a thread outside <c>KVM_RUN</c> would stay pending there), the bound thread is
    /// signalled; it returns <c>KVM_EXIT_INTR</c> at once if bound, or when the guest next exits if not.
    /// </remarks>
    public void Dispose()
    {
        if (_users.BeginRetire() && _run != null)
        {
            Volatile.Write(ref _run->immediate_exit, 1);
            lock (_kickGate)
            {
                if (_kickThreadId != 0)
                {
                    TrySignalBoundThreadLocked(out _); // a thread already gone needs no hurrying
                }
            }
        }

        _users.WaitForUses();
        lock (_kickGate)
        {
            UnbindLocked();
        }

        DirtyRing?.Dispose();
        _run = null;
        _runMapping.Dispose();

        Handle.Dispose();
    }
}
