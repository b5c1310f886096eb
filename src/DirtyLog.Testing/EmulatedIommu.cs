// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Native;
using DirtyLog.Tracking;

namespace DirtyLog.Testing;

/// <summary>
/// An emulated IOMMU behind iommufd: IO address spaces (IOAS) whose mappings are mirrored into hardware page tables
/// (<see cref="EmulatedHwpt"/>) of 4 KiB, 2 MiB and 1 GiB entries with a dirty bit each. DMA goes through a HWPT:
/// translate, set the entry's dirty bit, write guest memory.
/// </summary>
/// <remarks>
/// <para>It keeps the kernel's rules, with the kernel's errnos (as <see cref="KernelException"/>): maps must not
/// overlap (EEXIST), must be aligned (EINVAL) and must lie inside the <see cref="Aperture"/> when there is one (EINVAL);
/// an unmap must cover whole mappings (ENOENT) and drops their entries with their dirty bits; an unmap of a range that
/// holds no mapping is ENOENT, while unmap-all of an empty IOAS returns 0; unknown ids give ENOENT. The rules of dirty
/// tracking are on <see cref="EmulatedHwpt"/>. These rules are held to the kernel's own iommufd by a differential test
/// that runs the same seeded script here and on a kernel with its test IOMMU (tests/DirtyLog.KernelTests).</para>
/// <para>Thread safety: every member may be called from any thread. Per IOAS, DMA and dirty reads share a
/// reader lock and map, unmap and enabling take it exclusively, as the kernel's iova rwsem does.</para>
/// </remarks>
public sealed class EmulatedIommu
{
    /// <summary>The entry sizes the emulated page tables use.</summary>
    public static readonly IReadOnlyList<ulong> EntrySizes = [1UL << 30, 1UL << 21, 1UL << 12];

    private readonly Dictionary<uint, EmulatedIoas> _spaces = new();
    private readonly object _gate = new();
    private uint _nextId = 1;

    /// <summary>Creates an IOMMU in front of <paramref name="memory"/>.</summary>
    /// <param name="memory">The guest memory DMA writes to.</param>
    /// <param name="iovaAlignment">The IOVA alignment reported for every IOAS (a power of two, at least 4096).</param>
    public EmulatedIommu(EmulatedGuestMemory memory, ulong iovaAlignment = 4096)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (iovaAlignment < 4096 || (iovaAlignment & (iovaAlignment - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(iovaAlignment), iovaAlignment, "The IOVA alignment must be a power of two of at least 4096.");
        }

        Memory = memory;
        IovaAlignment = iovaAlignment;
    }

    /// <summary>The guest memory behind the IOMMU.</summary>
    public EmulatedGuestMemory Memory { get; }

    /// <summary>The IOVA alignment of every IOAS.</summary>
    public ulong IovaAlignment { get; }

    /// <summary>
    /// The IOVA range the devices behind this IOMMU can reach (their domain's aperture, as the kernel's mock IOMMU has
    /// [2^24, 2^31 - 1]), or <see langword="null"/> for the whole space: a map outside it is EINVAL, as in the kernel.
    /// </summary>
    public AddressRange? Aperture { get; init; }

    /// <summary><c>IOMMU_IOAS_ALLOC</c>.</summary>
    /// <returns>The new IOAS id.</returns>
    public uint AllocateIoas()
    {
        lock (_gate)
        {
            uint id = _nextId++;
            _spaces.Add(id, new EmulatedIoas(this, id));
            return id;
        }
    }

    /// <summary><c>IOMMU_HWPT_ALLOC</c>: a HWPT mirroring the IOAS's mappings.</summary>
    /// <param name="ioasId">The IOAS.</param>
    /// <param name="dirtyTracking">Allocate with <c>IOMMU_HWPT_ALLOC_DIRTY_TRACKING</c>; without it, dirty tracking gives EOPNOTSUPP.</param>
    /// <returns>The HWPT.</returns>
    public EmulatedHwpt AllocateHwpt(uint ioasId, bool dirtyTracking)
    {
        EmulatedIoas ioas = Find(ioasId, "IOMMU_HWPT_ALLOC");
        lock (_gate)
        {
            return ioas.AddHwpt(_nextId++, dirtyTracking);
        }
    }

    /// <summary><c>IOMMU_IOAS_MAP</c> with a fixed IOVA: maps guest memory at <paramref name="iova"/>.</summary>
    /// <param name="ioasId">The IOAS.</param>
    /// <param name="iova">Where the mapping goes.</param>
    /// <param name="guestAddress">The guest-physical address it translates to.</param>
    /// <param name="length">Bytes.</param>
    /// <param name="maxEntrySize">The largest IOPTE to use (4 KiB, 2 MiB or 1 GiB); entries are as large as alignment allows.</param>
    public void Map(uint ioasId, ulong iova, ulong guestAddress, ulong length, ulong maxEntrySize = 1UL << 30) =>
        Find(ioasId, "IOMMU_IOAS_MAP").Map(iova, guestAddress, length, maxEntrySize);

    /// <summary><c>IOMMU_IOAS_UNMAP</c>: removes the whole mappings in the range, and their dirty bits with them.</summary>
    /// <param name="ioasId">The IOAS.</param>
    /// <param name="iova">The first byte.</param>
    /// <param name="length">Bytes; (0, ulong.MaxValue) unmaps everything.</param>
    /// <returns>The bytes unmapped.</returns>
    public ulong Unmap(uint ioasId, ulong iova, ulong length) => Find(ioasId, "IOMMU_IOAS_UNMAP").Unmap(iova, length);

    internal static KernelException Error(string request, Errno errno) => new("ioctl", $"{request} on the emulated IOMMU", errno);

    private EmulatedIoas Find(uint ioasId, string request)
    {
        lock (_gate)
        {
            return _spaces.TryGetValue(ioasId, out EmulatedIoas? ioas) ? ioas : throw Error(request, Errno.ENOENT);
        }
    }
}
