// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.InteropServices;
using System.Threading;
using System.Runtime.Versioning;
using DirtyLog.Native.Internal;
using DirtyLog.Native.Linux;
using DirtyLog.Native.Linux.Kvm;
using static DirtyLog.Native.Linux.Kvm.KvmConstants;

namespace DirtyLog.Native;

/// <summary>
/// One vCPU's dirty ring, mapped from the vCPU fd at <c>KVM_DIRTY_LOG_PAGE_OFFSET</c>: entries KVM pushes as the vCPU
/// dirties pages, which user space harvests strictly in ring order and hands back with <c>KVM_RESET_DIRTY_RINGS</c>.
/// </summary>
/// <remarks>
/// One harvester at a time per ring (the fetch index is ours: KVM exports none); it may run on any thread while the
/// vCPU runs. Flags are read with acquire loads and written with release stores, as <c>KVM_CAP_DIRTY_LOG_RING_ACQ_REL</c>
/// requires. <see cref="Dispose"/> may race a harvest on another thread (a reaper): it waits for the harvest in
/// flight before unmapping, and later harvests throw <see cref="ObjectDisposedException"/>.
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed unsafe class KvmDirtyRing : IDisposable
{
    private readonly MemoryMappingHandle _mapping;
    private RetireGate _users; // harvests in flight; disposal retires it before unmapping
    private readonly DirtyRingCursor _cursor; // the fetch index and the way back in step after an overflow
    private kvm_dirty_gfn* _entries;

    internal KvmDirtyRing(FileDescriptorHandle vcpu, uint entries)
    {
        Entries = entries;
        long offset = KVM_DIRTY_LOG_PAGE_OFFSET * (long)Environment.SystemPageSize;
        _mapping = MemoryMappingHandle.MapShared(vcpu, (nuint)(entries * (ulong)sizeof(kvm_dirty_gfn)), offset, "dirty ring");
        _entries = (kvm_dirty_gfn*)_mapping.Pointer;
        _cursor = new DirtyRingCursor(_entries, entries);
        try
        {
            ProbeBacked(vcpu);
        }
        catch
        {
            _mapping.Dispose();
            throw;
        }
    }

    /// <summary>Entries in the ring.</summary>
    public uint Entries { get; }

    /// <summary>
    /// Maps the dirty ring of a vCPU the VMM created (its VM enabled the ring before creating it): DirtyLog harvests
    /// it; the VMM keeps running the vCPU. The mapping holds the vCPU in the kernel, not the descriptor: the VMM may
    /// dispose <paramref name="vcpu"/> once this returns, and the ring stays valid until disposed.
    /// </summary>
    /// <param name="vcpu">The vCPU descriptor, owned or borrowed (<see cref="FileDescriptorHandle.Borrow(System.Runtime.InteropServices.SafeHandle, string)"/>).</param>
    /// <param name="entries">The entries per ring the VM enabled (<c>KVM_CAP_DIRTY_LOG_RING</c>'s size / 16).</param>
    /// <returns>The ring.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="entries"/> is not a power of two of 256 to 65,536.</exception>
    /// <exception cref="ArgumentException">The descriptor is open but not a KVM vCPU.</exception>
    /// <exception cref="KernelException">
    /// The descriptor is not open (EBADF), or the vCPU has no ring of that size (mmap fails: EINVAL when its VM enabled none).
    /// </exception>
    public static KvmDirtyRing Map(FileDescriptorHandle vcpu, uint entries)
    {
        ArgumentNullException.ThrowIfNull(vcpu);
        if (entries < 256 || entries > 65536 || (entries & (entries - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(entries), entries, "The ring must hold a power of two of 256 to 65,536 entries.");
        }

        vcpu.Require("anon_inode:kvm-vcpu", "a KVM vCPU", nameof(vcpu));
        return new KvmDirtyRing(vcpu, entries);
    }

    /// <summary>
    /// Harvests every entry KVM has pushed, in order, marking each for reset; stops at the first entry not dirty.
    /// Call <see cref="KvmVm.ResetDirtyRings"/> afterwards, and read page contents only after that.
    /// </summary>
    /// <param name="onEntry">Receives (slot, page offset in the slot) per entry.</param>
    /// <returns>The number of entries harvested.</returns>
    public int Harvest(Action<uint, ulong> onEntry)
    {
        ArgumentNullException.ThrowIfNull(onEntry);
        var visitor = new ActionVisitor(onEntry);
        return Harvest(ref visitor);
    }

    /// <summary>
    /// As <see cref="Harvest(Action{uint, ulong})"/>, with a struct visitor whose calls the JIT inlines: a few
    /// nanoseconds per entry instead of a delegate call.
    /// </summary>
    /// <typeparam name="TVisitor">The visitor's type.</typeparam>
    /// <param name="visitor">Receives (slot, page offset in the slot) per entry.</param>
    /// <returns>The number of entries harvested.</returns>
    public int Harvest<TVisitor>(ref TVisitor visitor)
        where TVisitor : struct, IDirtyRingVisitor
    {
        ObjectDisposedException.ThrowIf(!_users.TryEnter(), this);
        try
        {
            return _cursor.Harvest(ref visitor);
        }
        finally
        {
            _users.Exit();
        }
    }

    /// <summary>
    /// After an overflow (a vCPU that pushed more than a lap in one run, which KVM warns of and does anyway): moves the
    /// harvest past the entries KVM counts as pushed but that its reset already recycled, marking them for reset, so
    /// that the next harvest and <see cref="KvmVm.ResetDirtyRings"/> reach the live entries behind them. Without it
    /// such a ring wedges: nothing more is harvested and every <c>KVM_RUN</c> returns <c>KVM_EXIT_DIRTY_RING_FULL</c>.
    /// </summary>
    /// <returns>The entries skipped; 0 when the ring is in step. Pages of skipped entries were harvested already.</returns>
    /// <remarks>
    /// Safe at any time from the ring's one harvester, the vCPU running or not: KVM pushes in order and publishes each
    /// entry with a release store, so an entry seen dirty beyond a recycled run proves the run was not pushed this lap.
    /// The overflow itself lost entries: the caller must treat the ring's slots as dirty.
    /// </remarks>
    /// <exception cref="ObjectDisposedException">The ring was disposed.</exception>
    public int SkipRecycledEntries()
    {
        ObjectDisposedException.ThrowIf(!_users.TryEnter(), this);
        try
        {
            return _cursor.SkipRecycled();
        }
        finally
        {
            _users.Exit();
        }
    }

    /// <summary>Entries skipped so far by <see cref="SkipRecycledEntries"/>.</summary>
    public long SkippedEntries => _cursor.Skipped;

    /// <summary>
    /// After <c>KVM_RESET_DIRTY_RINGS</c> on this ring's VM: whether KVM collected the entries harvested since the last
    /// check (it clears their flags). A ring whose harvested entries keep the reset flag is not one of that VM's: a
    /// vCPU of another VM was mapped by mistake, and its ring would fill and never empty.
    /// </summary>
    /// <returns>
    /// <see langword="false"/> when two resets in a row left the last harvested entry uncollected (after an overflow
    /// one reset can stop short, at an entry the vCPU pushed over one already handed back; the next moves on).
    /// </returns>
    /// <exception cref="ObjectDisposedException">The ring was disposed.</exception>
    public bool CheckHarvestedEntriesWereReset()
    {
        ObjectDisposedException.ThrowIf(!_users.TryEnter(), this);
        try
        {
            return _cursor.CheckHarvestedEntriesWereReset();
        }
        finally
        {
            _users.Exit();
        }
    }

    /// <summary>
    /// Checks that KVM backs the whole mapping (a vCPU whose VM enabled no ring, or a smaller one, maps fine and then
    /// faults with SIGBUS on first touch): reads its first and last entries with <c>process_vm_readv</c> on this
    /// process, which answers EFAULT where a plain read would kill the process.
    /// </summary>
    private void ProbeBacked(FileDescriptorHandle vcpu)
    {
        kvm_dirty_gfn copy;
        long* local = stackalloc long[2] { (long)&copy, sizeof(kvm_dirty_gfn) };
        long* remote = stackalloc long[2] { 0, sizeof(kvm_dirty_gfn) };
        foreach (long entry in new[] { (long)_entries, (long)(_entries + (Entries - 1)) })
        {
            remote[0] = entry;
            long read = Interop.syscall6(SyscallNumbers.__NR_process_vm_readv, Environment.ProcessId, (long)local, 1, (long)remote, 1, 0);
            if (read != sizeof(kvm_dirty_gfn))
            {
                Errno errno = read < 0 ? (Errno)Marshal.GetLastPInvokeError() : Errno.EFAULT;
                throw KernelErrors.From("mmap", $"dirty ring of {vcpu.Path} ({Entries} entries): KVM backs no such ring; did its VM enable one of that size?", errno);
            }
        }
    }

    private readonly struct ActionVisitor(Action<uint, ulong> onEntry) : IDirtyRingVisitor
    {
        public void Visit(uint slot, ulong offset) => onEntry(slot, offset);
    }

    /// <summary>Unmaps the ring, once no harvest is using it.</summary>
    public void Dispose()
    {
        _users.Retire();
        _entries = null;
        _mapping.Dispose();
    }
}
