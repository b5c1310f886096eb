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
    private kvm_dirty_gfn* _entries;
    private uint _fetch;
    private bool _resetToCheck; // entries were harvested since the last check that KVM reset them

    internal KvmDirtyRing(FileDescriptorHandle vcpu, uint entries)
    {
        Entries = entries;
        long offset = KVM_DIRTY_LOG_PAGE_OFFSET * (long)Environment.SystemPageSize;
        _mapping = MemoryMappingHandle.MapShared(vcpu, (nuint)(entries * (ulong)sizeof(kvm_dirty_gfn)), offset, "dirty ring");
        _entries = (kvm_dirty_gfn*)_mapping.Pointer;
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
            return HarvestEntered(ref visitor);
        }
        finally
        {
            _users.Exit();
        }
    }

    private int HarvestEntered<TVisitor>(ref TVisitor visitor)
        where TVisitor : struct, IDirtyRingVisitor
    {
        kvm_dirty_gfn* entries = _entries;
        uint mask = Entries - 1;
        uint fetch = _fetch;
        int count = 0;
        while (count < Entries)
        {
            kvm_dirty_gfn* entry = entries + (fetch & mask);

            // Acquire: the entry's slot and offset are read after KVM's release store of its flags.
            if ((Volatile.Read(ref entry->flags) & KVM_DIRTY_GFN_F_DIRTY) == 0)
            {
                break;
            }

            visitor.Visit(entry->slot, entry->offset);

            // Release: KVM sees the entry handed back only after it was read.
            Volatile.Write(ref entry->flags, KVM_DIRTY_GFN_F_RESET);
            fetch++;
            count++;
        }

        _fetch = fetch;
        _resetToCheck |= count != 0;
        return count;
    }

    /// <summary>
    /// After <c>KVM_RESET_DIRTY_RINGS</c> on this ring's VM: whether KVM collected the entries harvested since the last
    /// check (it clears their flags). A ring whose harvested entries keep the reset flag is not one of that VM's: a
    /// vCPU of another VM was mapped by mistake, and its ring would fill and never empty.
    /// </summary>
    /// <returns><see langword="false"/> when the last harvested entry was not collected.</returns>
    /// <exception cref="ObjectDisposedException">The ring was disposed.</exception>
    public bool CheckHarvestedEntriesWereReset()
    {
        ObjectDisposedException.ThrowIf(!_users.TryEnter(), this);
        try
        {
            if (!_resetToCheck)
            {
                return true;
            }

            // The last harvested entry cannot have been reused since: a vCPU stops at the soft limit, short of a lap.
            kvm_dirty_gfn* last = _entries + ((_fetch - 1) & (Entries - 1));
            if ((Volatile.Read(ref last->flags) & KVM_DIRTY_GFN_F_RESET) != 0)
            {
                return false;
            }

            _resetToCheck = false;
            return true;
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
