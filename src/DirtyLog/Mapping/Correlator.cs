// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;

namespace DirtyLog.Mapping;

/// <summary>
/// Maps IOVA dirties back to guest pages: one <see cref="IoAddressSpace"/> per IOAS, vIOMMU domain or device group,
/// all translating into one shared guest-page bitmap.
/// </summary>
/// <remarks>
/// Thread safety: adding and finding address spaces may be called from any thread; each address space documents its
/// own guarantees (reads concurrent with each other, map changes exclusive and ordered).
/// </remarks>
public sealed class Correlator
{
    private readonly Dictionary<uint, IoAddressSpace> _spaces = new();

    /// <summary>Creates a correlator that marks guest pages in <paramref name="target"/>.</summary>
    /// <param name="target">The shared bitmap, in guest-physical page space.</param>
    public Correlator(SparseDirtyBitmap target)
    {
        ArgumentNullException.ThrowIfNull(target);
        Target = target;
    }

    /// <summary>The shared guest-page bitmap.</summary>
    public SparseDirtyBitmap Target { get; }

    /// <summary>A snapshot of the address spaces.</summary>
    public IReadOnlyList<IoAddressSpace> AddressSpaces
    {
        get
        {
            lock (_spaces)
            {
                return [.. _spaces.Values];
            }
        }
    }

    /// <summary>Adds an address space whose map changes go through <paramref name="backend"/>.</summary>
    /// <param name="id">The IOAS or domain id, as the trackers report it.</param>
    /// <param name="backend">What applies map and unmap.</param>
    /// <returns>The new address space, with no mapping.</returns>
    /// <exception cref="ArgumentException">The id is taken, or the backend's alignment is not a power of two of at least the bitmap's page.</exception>
    public IoAddressSpace AddAddressSpace(uint id, IIoMapBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (!System.Numerics.BitOperations.IsPow2(backend.IovaAlignment) || backend.IovaAlignment < (ulong)Target.PageSize)
        {
            throw new ArgumentException($"The backend's alignment {backend.IovaAlignment} must be a power of two of at least {Target.PageSize}.", nameof(backend));
        }

        lock (_spaces)
        {
            if (_spaces.ContainsKey(id))
            {
                throw new ArgumentException($"Address space {id} exists already.", nameof(id));
            }

            var space = new IoAddressSpace(id, backend, Target);
            _spaces.Add(id, space);
            return space;
        }
    }

    /// <summary>The address space with id <paramref name="id"/>.</summary>
    /// <param name="id">The id.</param>
    /// <returns>The address space.</returns>
    /// <exception cref="KeyNotFoundException">No such address space.</exception>
    public IoAddressSpace GetAddressSpace(uint id)
    {
        lock (_spaces)
        {
            return _spaces.TryGetValue(id, out IoAddressSpace? space) ? space : throw new KeyNotFoundException($"No address space {id}.");
        }
    }
}
