// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Numerics;
using System.Threading;
using DirtyLog.Native;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Testing;

/// <summary>
/// A hardware page table of the <see cref="EmulatedIommu"/>, and the emulated <see cref="IIommuDirtyPort"/> over it.
/// </summary>
/// <remarks>
/// <para>Dirty tracking keeps the kernel's rules: only a HWPT allocated for it can track (EOPNOTSUPP otherwise);
/// enabling starts a clean epoch; a query needs iova and length aligned to the IOVA alignment and to the page size
/// (EINVAL), a non-zero page size (EINVAL) and no overflow (EOVERFLOW); the bitmap is only ORed into; a dirty huge
/// entry marks every bit it covers; a query stops silently at the first unmapped hole, leaving what follows
/// unreported and uncleared; unmapping drops entries with their dirty bits.</para>
/// <para>Fault and latency injection (<see cref="Reports"/>, <see cref="FailNextReports"/>) let tests drive a
/// harvester's deadlines and fault policies.</para>
/// <para>Thread safety: DMA and queries may run from any number of threads; see <see cref="EmulatedIommu"/>.</para>
/// </remarks>
public sealed class EmulatedHwpt : IIommuDirtyPort
{
    private const string GetRequest = "IOMMU_HWPT_GET_DIRTY_BITMAP";
    private const string SetRequest = "IOMMU_HWPT_SET_DIRTY_TRACKING";

    private readonly EmulatedIoas _ioas;
    private readonly Dictionary<ulong, IoPageTableEntry>[] _tables = [new(), new(), new()];
    private volatile bool _tracking;
    private int _failures;
    private int _failErrno;

    internal EmulatedHwpt(EmulatedIoas ioas, uint id, bool dirtyTracking)
    {
        _ioas = ioas;
        Id = id;
        DirtyTrackingCapable = dirtyTracking;
    }

    /// <summary>The HWPT's object id.</summary>
    public uint Id { get; }

    /// <summary>Whether it was allocated with dirty tracking.</summary>
    public bool DirtyTrackingCapable { get; }

    /// <summary>Whether dirty tracking is enabled.</summary>
    public bool DirtyTrackingEnabled => _tracking;

    /// <inheritdoc/>
    public string Name => $"emulated-hwpt{Id}";

    /// <inheritdoc/>
    public uint IoAddressSpaceId => _ioas.Id;

    /// <inheritdoc/>
    public ulong IovaAlignment => _ioas.IovaAlignment;

    /// <summary>The gate each dirty query passes before it runs: held by tests, slowed by benchmarks.</summary>
    public ReportGate Reports { get; } = new();

    /// <summary>Makes the next <paramref name="count"/> dirty queries fail with <paramref name="errno"/>.</summary>
    /// <param name="errno">The errno, such as <see cref="Errno.EIO"/>.</param>
    /// <param name="count">How many queries fail.</param>
    public void FailNextReports(Errno errno, int count = 1)
    {
        Volatile.Write(ref _failErrno, (int)errno);
        Volatile.Write(ref _failures, count);
    }

    /// <summary>A device's DMA write through this page table: translate, set the entry's dirty bit, then write guest memory.</summary>
    /// <param name="iova">The IOVA written.</param>
    /// <param name="data">The bytes.</param>
    /// <returns><see langword="false"/> on an IO page fault (an unmapped IOVA): the bytes before it were written.</returns>
    public bool DmaWrite(ulong iova, ReadOnlySpan<byte> data) => DmaWrite(iova, data, null);

    /// <summary>
    /// A DMA write whose device logs it (<paramref name="onIssue"/>) under the same lock as the translation, as on
    /// hardware: an unmap cannot fall between a device's log entry and the translation of the same write.
    /// </summary>
    internal bool DmaWrite(ulong iova, ReadOnlySpan<byte> data, Action<ulong, int>? onIssue)
    {
        _ioas.Lock.EnterReadLock();
        try
        {
            onIssue?.Invoke(iova, data.Length);
            ulong address = iova;
            while (!data.IsEmpty)
            {
                IoPageTableEntry? entry = Lookup(address);
                if (entry is null)
                {
                    return false;
                }

                int piece = (int)Math.Min((ulong)data.Length, entry.Iova + entry.Size - address);

                // The dirty bit is set before the data lands, as the IOMMU does on translation: whoever sees the
                // data in memory can rely on the bit (or on a read that already took it).
                if (_tracking && Volatile.Read(ref entry.Dirty) == 0)
                {
                    Interlocked.Exchange(ref entry.Dirty, 1);
                }

                _ioas.Memory.Write(entry.GuestAddress + (address - entry.Iova), data[..piece]);
                data = data[piece..];
                address += (ulong)piece;
            }

            return true;
        }
        finally
        {
            _ioas.Lock.ExitReadLock();
        }
    }

    /// <summary>A DMA write of one 64-bit value.</summary>
    /// <param name="iova">The IOVA written, 8-byte aligned.</param>
    /// <param name="value">The value.</param>
    /// <returns><see langword="false"/> on an IO page fault.</returns>
    public bool DmaWriteUInt64(ulong iova, ulong value) => DmaWrite(iova, BitConverter.GetBytes(value));

    /// <inheritdoc/>
    public void SetDirtyTracking(bool enable)
    {
        if (!DirtyTrackingCapable)
        {
            throw EmulatedIommu.Error(SetRequest, Errno.EOPNOTSUPP);
        }

        _ioas.Lock.EnterWriteLock();
        try
        {
            if (enable && !_tracking)
            {
                // A clean epoch: stale dirtiness from before is discarded.
                foreach (Dictionary<ulong, IoPageTableEntry> table in _tables)
                {
                    foreach (IoPageTableEntry entry in table.Values)
                    {
                        entry.Dirty = 0;
                    }
                }
            }

            _tracking = enable;
        }
        finally
        {
            _ioas.Lock.ExitWriteLock();
        }
    }

    /// <inheritdoc/>
    public void GetDirtyBitmap(ulong iova, ulong length, ulong pageSize, Span<ulong> bitmap, bool noClear)
    {
        // The real binding's own checks first, as it makes them before the ioctl: the same exceptions on both.
        DirtyLog.Native.IommufdContext.CheckDirtyBitmapArguments(length, pageSize, bitmap.Length);
        if (!DirtyTrackingCapable)
        {
            throw EmulatedIommu.Error(GetRequest, Errno.EOPNOTSUPP);
        }

        if (length != 0 && iova + length - 1 < iova)
        {
            throw EmulatedIommu.Error(GetRequest, Errno.EOVERFLOW);
        }

        if (pageSize == 0 || !BitOperations.IsPow2(pageSize) || length == 0 || ((iova | length) & (IovaAlignment - 1)) != 0 || ((iova | length) & (pageSize - 1)) != 0)
        {
            throw EmulatedIommu.Error(GetRequest, Errno.EINVAL);
        }

        int shift = BitOperations.TrailingZeroCount(pageSize);
        if ((ulong)bitmap.Length * 64 < ((length - 1) >> shift) + 1)
        {
            throw EmulatedIommu.Error(GetRequest, Errno.EFAULT);
        }

        Reports.Pass();

        if (Volatile.Read(ref _failures) > 0 && Interlocked.Decrement(ref _failures) >= 0)
        {
            throw EmulatedIommu.Error(GetRequest, (Errno)Volatile.Read(ref _failErrno));
        }

        _ioas.Lock.EnterReadLock();
        try
        {
            ulong end = iova + length;
            for (ulong address = iova; address < end;)
            {
                IoPageTableEntry? entry = Lookup(address);
                if (entry is null)
                {
                    return; // a hole: the walk stops here, silently, as the kernel's does
                }

                int dirty = noClear ? Volatile.Read(ref entry.Dirty) : Interlocked.Exchange(ref entry.Dirty, 0);
                ulong entryEnd = entry.Iova + entry.Size;
                if (dirty != 0)
                {
                    ulong first = (Math.Max(entry.Iova, iova) - iova) >> shift;
                    ulong last = (Math.Min(entryEnd, end) - 1 - iova) >> shift;
                    SetBits(bitmap, first, last);
                }

                address = entryEnd;
            }
        }
        finally
        {
            _ioas.Lock.ExitReadLock();
        }
    }

    /// <summary>Adds the IOPTEs of a mapping, each as large as alignment and the mapping's cap allow; under the IOAS write lock.</summary>
    internal void AddEntries(IommuMapping mapping)
    {
        for (ulong offset = 0; offset < mapping.Length;)
        {
            ulong iova = mapping.Iova + offset, gpa = mapping.GuestAddress + offset;
            for (int t = 0; t < EmulatedIommu.EntrySizes.Count; t++)
            {
                ulong size = EmulatedIommu.EntrySizes[t];
                if (size <= mapping.MaxEntrySize && ((iova | gpa) & (size - 1)) == 0 && mapping.Length - offset >= size)
                {
                    _tables[t].Add(iova, new IoPageTableEntry(iova, size, gpa));
                    offset += size;
                    break;
                }
            }
        }
    }

    /// <summary>Removes the IOPTEs of a mapping, dirty bits included; under the IOAS write lock.</summary>
    internal void RemoveEntries(IommuMapping mapping)
    {
        for (ulong address = mapping.Iova; address < mapping.End;)
        {
            IoPageTableEntry entry = Lookup(address)!;
            foreach (Dictionary<ulong, IoPageTableEntry> table in _tables)
            {
                table.Remove(entry.Iova);
            }

            address = entry.Iova + entry.Size;
        }
    }

    private IoPageTableEntry? Lookup(ulong iova)
    {
        for (int t = 0; t < _tables.Length; t++)
        {
            ulong size = EmulatedIommu.EntrySizes[t];
            if (_tables[t].TryGetValue(iova & ~(size - 1), out IoPageTableEntry? entry))
            {
                return entry;
            }
        }

        return null;
    }

    private static void SetBits(Span<ulong> bitmap, ulong first, ulong last)
    {
        for (ulong bit = first; bit <= last;)
        {
            int word = (int)(bit / 64);
            int from = (int)(bit % 64);
            int to = (int)Math.Min(63, last - ((ulong)word * 64));
            bitmap[word] |= (~0UL << from) & (~0UL >> (63 - to));
            bit = ((ulong)word + 1) * 64;
        }
    }
}
