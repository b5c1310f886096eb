// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using System.Runtime.Versioning;
using DirtyLog.Native.Linux.Kvm;
using static DirtyLog.Native.Linux.Kvm.KvmConstants;

namespace DirtyLog.Native;

/// <summary>
/// A KVM virtual machine as DirtyLog needs it: its dirty log (<c>KVM_GET_DIRTY_LOG</c>, <c>KVM_CLEAR_DIRTY_LOG</c>), the
/// reset of its dirty rings, and the logging flag of its memory slots. Creating VMs, vCPUs and running them is the
/// VMM's business: <see cref="FromHandle"/> wraps the VMM's VM.
/// </summary>
/// <remarks>Calls may come from any thread; the kernel serialises what must be.</remarks>
[SupportedOSPlatform("linux")]
public sealed unsafe class KvmVm : IDisposable
{
    private readonly Dictionary<uint, KvmMemorySlot> _slots = new();
    private long _slotTableVersion;

    internal KvmVm(FileDescriptorHandle handle) => Handle = handle;

    /// <summary>
    /// A VM the VMM created (<c>KVM_CREATE_VM</c> on its own <c>/dev/kvm</c>), over its descriptor: DirtyLog reads and
    /// resets its dirty state; the VMM keeps creating vCPUs, setting memslots and running it. The descriptor is closed
    /// by disposing only if <paramref name="handle"/> owns it (<see cref="FileDescriptorHandle.Own"/>); a borrowed one
    /// (<see cref="FileDescriptorHandle.Borrow(System.Runtime.InteropServices.SafeHandle, string)"/>) stays the VMM's.
    /// </summary>
    /// <param name="handle">The VM descriptor.</param>
    /// <param name="manualDirtyLogProtect">
    /// Whether the VMM enabled <c>KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2</c> on it (KVM offers no way to ask).
    /// </param>
    /// <param name="dirtyRingEntries">The entries per vCPU ring the VMM enabled, 0 when it logs with bitmaps.</param>
    /// <returns>The VM.</returns>
    /// <exception cref="KernelException">The descriptor is not open (EBADF), or not a KVM descriptor (ENOTTY).</exception>
    /// <exception cref="ArgumentException">It is open but not a KVM VM (<c>/dev/kvm</c> itself, a vCPU, a file).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dirtyRingEntries"/> is not 0 or a power of two of 256 to 65,536.</exception>
    public static KvmVm FromHandle(FileDescriptorHandle handle, bool manualDirtyLogProtect = false, uint dirtyRingEntries = 0)
    {
        ArgumentNullException.ThrowIfNull(handle);
        if (dirtyRingEntries != 0)
        {
            CheckRingEntries(dirtyRingEntries, nameof(dirtyRingEntries));
        }

        handle.Require("anon_inode:kvm-vm", "a KVM VM");

        // A harmless VM ioctl, so that a descriptor that only looks right fails here, naming the call and errno.
        handle.Ioctl(KVM_CHECK_EXTENSION, nameof(KVM_CHECK_EXTENSION), (void*)KVM_CAP_USER_MEMORY);
        return new KvmVm(handle) { ManualDirtyLogProtect = manualDirtyLogProtect, DirtyRingEntries = dirtyRingEntries };
    }

    /// <summary>The VM descriptor.</summary>
    public FileDescriptorHandle Handle { get; }

    /// <summary>Whether the VM enabled manual dirty-log protection (<c>KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2</c>).</summary>
    public bool ManualDirtyLogProtect { get; internal set; }

    /// <summary>The dirty ring's entries per vCPU, 0 when the VM logs with bitmaps.</summary>
    public uint DirtyRingEntries { get; internal set; }

    /// <summary><c>KVM_CHECK_EXTENSION</c> on the VM fd (preferred over the system fd).</summary>
    /// <param name="capability">The capability number.</param>
    /// <returns>0 when absent; otherwise a capability-specific value.</returns>
    public int CheckExtension(uint capability) => Handle.Ioctl(KVM_CHECK_EXTENSION, nameof(KVM_CHECK_EXTENSION), (void*)capability);

    /// <summary><c>KVM_RESET_DIRTY_RINGS</c>: re-protects the harvested entries of every vCPU's ring and returns them to KVM.</summary>
    /// <returns>The number of entries reset.</returns>
    public int ResetDirtyRings()
    {
        while (true)
        {
            int result = Handle.TryIoctl(KVM_RESET_DIRTY_RINGS, null, out Errno errno);
            if (result >= 0)
            {
                return result;
            }

            // Newer kernels stop part way on a pending signal: call again.
            if (errno != Errno.EINTR)
            {
                throw KernelErrors.From("ioctl", $"{nameof(KVM_RESET_DIRTY_RINGS)} on {Handle.Path}", errno);
            }
        }
    }

    /// <summary>A number that changes whenever <see cref="SetMemorySlot"/> changes the slot table (cache key for decoders).</summary>
    public long SlotTableVersion => Interlocked.Read(ref _slotTableVersion);

    /// <summary>The slots registered so far.</summary>
    /// <returns>A snapshot.</returns>
    public KvmMemorySlot[] GetSlots()
    {
        lock (_slots)
        {
            return [.. _slots.Values];
        }
    }

    /// <summary><c>KVM_SET_USER_MEMORY_REGION</c>: creates or changes a slot (flags toggle dirty logging on an existing slot).</summary>
    /// <param name="slot">The slot.</param>
    public void SetMemorySlot(KvmMemorySlot slot)
    {
        ArgumentNullException.ThrowIfNull(slot);
        var region = new kvm_userspace_memory_region
        {
            slot = slot.Id,
            flags = slot.LogDirtyPages ? KVM_MEM_LOG_DIRTY_PAGES : 0,
            guest_phys_addr = slot.GuestAddress,
            memory_size = slot.Size,
            userspace_addr = slot.HostAddress,
        };
        Handle.Ioctl(KVM_SET_USER_MEMORY_REGION, nameof(KVM_SET_USER_MEMORY_REGION), &region);
        lock (_slots)
        {
            _slots[slot.Id] = slot;
            Interlocked.Increment(ref _slotTableVersion);
        }
    }

    /// <summary>The slot registered under <paramref name="slotId"/>.</summary>
    /// <param name="slotId">The slot id.</param>
    /// <returns>The slot.</returns>
    /// <exception cref="ArgumentException">No such slot.</exception>
    public KvmMemorySlot GetSlot(uint slotId)
    {
        lock (_slots)
        {
            return _slots.TryGetValue(slotId, out KvmMemorySlot? slot) ? slot : throw new ArgumentException($"Memory slot {slotId} does not exist.", nameof(slotId));
        }
    }

    /// <summary><c>KVM_GET_DIRTY_LOG</c>: the slot's dirty bitmap (classic: fetched and re-protected; manual: only copied).</summary>
    /// <param name="slotId">A slot set through <see cref="SetMemorySlot"/>.</param>
    /// <param name="bitmap">At least ceil(pages / 64) words; bit i = page i of the slot.</param>
    public void GetDirtyLog(uint slotId, Span<ulong> bitmap) => GetDirtyLog(GetSlot(slotId), bitmap);

    /// <summary>
    /// <c>KVM_GET_DIRTY_LOG</c> of a slot described by the caller (the VMM set it with its own
    /// <c>KVM_SET_USER_MEMORY_REGION</c>): the slot's size bounds what KVM writes into <paramref name="bitmap"/>.
    /// </summary>
    /// <param name="slot">The slot, as the VMM set it.</param>
    /// <param name="bitmap">At least ceil(pages / 64) words; bit i = page i of the slot.</param>
    /// <exception cref="ArgumentException"><paramref name="bitmap"/> is shorter than the slot needs.</exception>
    /// <exception cref="KernelException">KVM refused: ENOENT when the slot does not log dirty pages, EINVAL when there is no such slot.</exception>
    public void GetDirtyLog(KvmMemorySlot slot, Span<ulong> bitmap)
    {
        ArgumentNullException.ThrowIfNull(slot);
        CheckBitmap(slot, bitmap.Length, nameof(bitmap));
        fixed (ulong* p = bitmap)
        {
            var log = new kvm_dirty_log { slot = slot.Id, dirty_bitmap = (ulong)p };
            Handle.Ioctl(KVM_GET_DIRTY_LOG, $"{nameof(KVM_GET_DIRTY_LOG)}(slot {slot.Id})", &log);
        }
    }

    /// <summary><c>KVM_CLEAR_DIRTY_LOG</c>: clears and re-protects the pages whose bits are set (manual mode).</summary>
    /// <param name="slotId">The slot.</param>
    /// <param name="firstPage">A multiple of 64.</param>
    /// <param name="pageCount">A multiple of 64, unless the range ends at the slot's end.</param>
    /// <param name="bitmap">Bit i: page <paramref name="firstPage"/> + i.</param>
    public void ClearDirtyLog(uint slotId, ulong firstPage, uint pageCount, ReadOnlySpan<ulong> bitmap)
    {
        if ((ulong)bitmap.Length * 64 < pageCount)
        {
            throw new ArgumentException($"The bitmap has {bitmap.Length} words for {pageCount} pages.", nameof(bitmap));
        }

        fixed (ulong* p = bitmap)
        {
            var clear = new kvm_clear_dirty_log { slot = slotId, num_pages = pageCount, first_page = firstPage, dirty_bitmap = (ulong)p };
            Handle.Ioctl(KVM_CLEAR_DIRTY_LOG, nameof(KVM_CLEAR_DIRTY_LOG), &clear);
        }
    }

    /// <summary>Closes the VM.</summary>
    public void Dispose() => Handle.Dispose();

    internal static void CheckRingEntries(uint entries, string paramName)
    {
        if (entries < 256 || entries > 65536 || (entries & (entries - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(paramName, entries, "The ring must hold a power of two of 256 to 65,536 entries.");
        }
    }

    private static void CheckBitmap(KvmMemorySlot slot, int words, string paramName)
    {
        ulong needed = (slot.Pages + 63) / 64;
        if ((ulong)words < needed)
        {
            throw new ArgumentException($"Slot {slot.Id} has {slot.Pages} pages: the bitmap needs {needed} words, not {words}.", paramName);
        }
    }
}
