// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Internal;

namespace DirtyLog.Tracking;

/// <summary>
/// The common part of every tracker: the life cycle, the serialisation promised by <see cref="IDirtyTracker"/>
/// (one lock per tracker), and the checks on every read. A tracker supplies the start, stop and read of its facility.
/// </summary>
/// <remarks>
/// <para>Thread safety: every member may be called from any thread. Two locks: the life-cycle lock serialises start,
/// stop and dispose; the read lock serialises reads and is held while the facility is read and while the read's sink
/// is called. Start and stop run the facility's own work (ioctls, joins) under the life-cycle lock only: they take
/// the read lock just long enough to flip the state, so a harvest never waits behind them; a read that arrives
/// while the tracker starts or stops is refused at once with <see cref="InvalidOperationException"/>, and no read is
/// ever in flight while <see cref="OnStart"/> or <see cref="OnStop"/> runs.</para>
/// <para>Lock order: the life-cycle lock, then a correlator address space's lock (a tracker attached to one is read
/// under it, see <see cref="Mapping.IoAddressSpace"/>), then the read lock, then any lock of the tracker's own;
/// nothing is ever taken the other way round.</para>
/// </remarks>
public abstract class DirtyTrackerBase : IDirtyTracker
{
    private readonly Lock _lifecycle = new(); // start, stop, dispose
    private readonly Lock _gate = new();      // reads, and the state flips
    private DirtyTrackerState _state;         // under _gate; the life cycle also reads it under its own lock (a read can only turn Started into Faulted)
    private bool _transition;                 // start or stop in progress: reads are refused; under _gate
    private bool _disposed;                   // written under both locks

    /// <summary>Creates a tracker.</summary>
    /// <param name="name">The name for diagnostics.</param>
    /// <param name="addressSpace">The address space it reports in.</param>
    /// <param name="pageSize">The requested granule in bytes: a power of two of at least 4096.</param>
    protected DirtyTrackerBase(string name, DirtyAddressSpace addressSpace, long pageSize)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (pageSize < 4096 || !BitOperations.IsPow2(pageSize))
        {
            throw new ArgumentOutOfRangeException(nameof(pageSize), pageSize, "The page size must be a power of two of at least 4096 bytes.");
        }

        Name = name;
        AddressSpace = addressSpace;
        PageSize = pageSize;
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public DirtyAddressSpace AddressSpace { get; }

    /// <inheritdoc/>
    public long PageSize { get; protected set; }

    /// <inheritdoc/>
    public abstract IReadOnlyList<AddressRange> Coverage { get; }

    /// <inheritdoc/>
    public abstract bool CanReadWithoutClear { get; }

    /// <inheritdoc/>
    public DirtyTrackerState State => (DirtyTrackerState)Volatile.Read(ref Unsafe.As<DirtyTrackerState, int>(ref _state));

    /// <inheritdoc/>
    public void StartTracking()
    {
        lock (_lifecycle)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
            if (_state == DirtyTrackerState.Started)
            {
                return;
            }

            if (_state == DirtyTrackerState.Faulted)
            {
                throw new InvalidOperationException($"{Name} faulted: stop it before starting it again.");
            }

            // Stopped: reads are refused already, so the facility starts with no read lock held.
            try
            {
                OnStart();
            }
            catch (Exception e) when (e is not DirtyTrackerException)
            {
                throw new DirtyTrackerException(Name, $"could not start: {e.Message}", e);
            }

            SetState(DirtyTrackerState.Started);
        }
    }

    /// <inheritdoc/>
    public void StopTracking()
    {
        lock (_lifecycle)
        {
            if (_state == DirtyTrackerState.Stopped)
            {
                return;
            }

            BeginTransition();
            try
            {
                OnStop();
            }
            catch (Exception e)
            {
                SetState(DirtyTrackerState.Faulted);
                if (e is DirtyTrackerException)
                {
                    throw;
                }

                throw new DirtyTrackerException(Name, $"could not stop (call StopTracking again to retry): {e.Message}", e);
            }

            SetState(DirtyTrackerState.Stopped);
        }
    }

    /// <summary>Refuses reads from now on; waits for a read in flight (the only wait under the life-cycle lock).</summary>
    private void BeginTransition()
    {
        lock (_gate)
        {
            _transition = true;
        }
    }

    /// <summary>Publishes the state a transition ended in and lets reads in again.</summary>
    private void SetState(DirtyTrackerState state)
    {
        lock (_gate)
        {
            _state = state;
            _transition = false;
        }
    }

    /// <inheritdoc/>
    public ulong ReadDirty(AddressRange range, SparseDirtyBitmap target, DirtyReadMode mode)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (target.PageSize > PageSize)
        {
            throw new ArgumentException($"The target's pages ({target.PageSize} bytes) are larger than {Name}'s granule ({PageSize} bytes).", nameof(target));
        }

        // Checked before anything is consumed: a read cannot put back what it took from the facility. Only a range
        // that does not fit the target needs the coverage (which can be long: every mapping of an IO address space).
        if (!range.IsEmpty && ((range.End - 1) >> target.PageShift) >= target.PageCount)
        {
            ulong end = 0;
            foreach (AddressRange covered in Coverage)
            {
                AddressRange piece = covered.Intersect(range);
                end = piece.IsEmpty ? end : Math.Max(end, piece.End);
            }

            if (end != 0 && ((end - 1) >> target.PageShift) >= target.PageCount)
            {
                throw new ArgumentException($"{Name} covers up to 0x{end:x} within {range}, beyond the target's {target.AddressWidth}-bit address space.", nameof(target));
            }
        }

        return ReadDirty(range, new BitmapGranuleSink(target), mode);
    }

    /// <inheritdoc/>
    public ulong ReadDirty(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode)
    {
        ArgumentNullException.ThrowIfNull(sink);
        if (!range.IsAlignedTo((ulong)PageSize))
        {
            throw new ArgumentException($"{range} is not aligned to {Name}'s granule of {PageSize} bytes.", nameof(range));
        }

        if (mode == DirtyReadMode.NoClear && !CanReadWithoutClear)
        {
            throw new NotSupportedException($"{Name} cannot read without clearing.");
        }

        // Lock order: the lock of the map the tracker reads through (if any), then its own; see IoAddressSpace.
        IMappedRangeSource? map = MapLock;
        map?.EnterRead();
        try
        {
            return ReadUnderOwnLock(range, sink, mode);
        }
        finally
        {
            map?.ExitRead();
        }
    }

    private ulong ReadUnderOwnLock(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_transition)
            {
                throw new InvalidOperationException($"{Name} is stopping, not started.");
            }

            if (_state != DirtyTrackerState.Started)
            {
                throw new InvalidOperationException($"{Name} is {_state}, not started.");
            }

            try
            {
                return ReadCore(range, sink, mode);
            }
            catch (Exception e)
            {
                // Whatever failed (the facility, or the sink after the facility handed its bits over), part of the
                // log may be gone: faulted is the only honest state, and it makes the caller mark the coverage.
                _state = DirtyTrackerState.Faulted;
                if (e is DirtyTrackerException)
                {
                    throw;
                }

                throw new DirtyTrackerException(Name, $"read of {range} failed; treat its coverage as dirty: {e.Message}", e);
            }
        }
    }

    /// <summary>Stops the tracker if needed, then releases what it holds.</summary>
    /// <remarks>A read in flight finishes first; later reads throw <see cref="ObjectDisposedException"/>.</remarks>
    public void Dispose()
    {
        lock (_lifecycle)
        {
            if (_disposed)
            {
                return;
            }

            BeginTransition();
            if (_state != DirtyTrackerState.Stopped)
            {
                try
                {
                    OnStop();
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // Disposal must not throw; a tracker that could not stop was already reported by StopTracking.
                }
            }

            lock (_gate)
            {
                _state = DirtyTrackerState.Stopped;
                _disposed = true;
                _transition = false;
            }

            Dispose(true);
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>The map whose lock a read takes before the tracker's own (an attached IOMMU tracker's address space).</summary>
    private protected virtual IMappedRangeSource? MapLock => null;

    /// <summary>Starts the facility; called under the life-cycle lock (not the read lock: no read runs meanwhile), only from <see cref="DirtyTrackerState.Stopped"/>.</summary>
    protected abstract void OnStart();

    /// <summary>Stops the facility; called under the life-cycle lock (not the read lock: no read runs meanwhile), from a started or faulted state. Must be safe to repeat.</summary>
    protected abstract void OnStop();

    /// <summary>Reads a checked range into the sink; called under the read lock while started, never during a start or stop.</summary>
    /// <param name="range">The range, aligned to <see cref="PageSize"/>.</param>
    /// <param name="sink">The sink.</param>
    /// <param name="mode">The mode, supported by the tracker.</param>
    /// <returns>The number of dirty granules.</returns>
    protected abstract ulong ReadCore(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode);

    /// <summary>Releases resources; called once, under the life-cycle lock, after the tracker stopped and no read can run.</summary>
    /// <param name="disposing">Always <see langword="true"/>.</param>
    protected virtual void Dispose(bool disposing)
    {
    }

    /// <summary>Hands one chunk to <paramref name="sink"/> when it has a dirty bit, and counts its bits.</summary>
    /// <param name="bitmap">Bit k: granule at <paramref name="start"/> + k × <see cref="PageSize"/>.</param>
    /// <param name="bits">How many bits count.</param>
    /// <param name="start">The address of bit 0.</param>
    /// <param name="sink">The sink.</param>
    /// <returns>The number of set bits.</returns>
    protected ulong Deliver(ReadOnlySpan<ulong> bitmap, ulong bits, ulong start, IDirtyGranuleSink sink)
    {
        ArgumentNullException.ThrowIfNull(sink);
        ulong count = 0;
        ref ulong words = ref MemoryMarshal.GetReference(bitmap);
        int i = 0;
        for (; i + 8 <= bitmap.Length; i += 8)
        {
            // Most words of a sparse read are zero: test a line of them at once and count only the rest.
            uint nonZero = WordScan.NonZeroMask8(ref Unsafe.Add(ref words, i));
            while (nonZero != 0)
            {
                count += (ulong)BitOperations.PopCount(Unsafe.Add(ref words, i + BitOperations.TrailingZeroCount(nonZero)));
                nonZero &= nonZero - 1;
            }
        }

        for (; i < bitmap.Length; i++)
        {
            count += (ulong)BitOperations.PopCount(bitmap[i]);
        }

        if (count != 0)
        {
            sink.Accept(start, PageSize, bitmap, bits);
        }

        return count;
    }
}
