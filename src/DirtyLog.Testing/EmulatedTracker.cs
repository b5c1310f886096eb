// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Native.Internal;
using DirtyLog.Tracking;

namespace DirtyLog.Testing;

/// <summary>
/// A guest-physical tracker whose writes are scripted: a stand-in for any real tracker in tests and benchmarks of
/// harvesting and pre-copy control, with reports held, slowed or failed on demand.
/// </summary>
/// <remarks>
/// Like a real tracker it logs only while started, a clearing read returns and forgets what it logged, and a failed
/// read leaves it faulted. Thread safety: <see cref="Write"/> and <see cref="WriteRange"/> may be called from any
/// thread at any time, concurrently with reads, stops and disposal: a write racing <see cref="DirtyTrackerBase.Dispose()"/>
/// is logged or dropped, never applied to the freed log (disposal waits for the writes in flight); the rest as
/// <see cref="IDirtyTracker"/>.
/// </remarks>
public sealed class EmulatedTracker : DirtyTrackerBase
{
    private const int ChunkWords = 4096;

    private readonly AddressRange _coverage;
    private readonly SparseDirtyBitmap _log;
    private readonly ulong[] _scratch = new ulong[ChunkWords];
    private RetireGate _writers; // writes in flight; disposal retires it before freeing the log
    private int _failures;
    private volatile bool _logging;

    /// <summary>Creates a tracker over one guest-physical range.</summary>
    /// <param name="name">Its name.</param>
    /// <param name="coverage">The guest-physical range it watches, 4 KiB aligned.</param>
    /// <exception cref="ArgumentException"><paramref name="coverage"/> is empty or not aligned.</exception>
    public EmulatedTracker(string name, AddressRange coverage)
        : base(name, DirtyAddressSpace.GuestPhysical, 4096)
    {
        if (coverage.IsEmpty || !coverage.IsAlignedTo(4096))
        {
            throw new ArgumentException($"{coverage} is empty or not 4 KiB aligned.", nameof(coverage));
        }

        _coverage = coverage;
        _log = new SparseDirtyBitmap(64 - System.Numerics.BitOperations.LeadingZeroCount(coverage.End - 1));
    }

    /// <inheritdoc/>
    public override IReadOnlyList<AddressRange> Coverage => [_coverage];

    /// <inheritdoc/>
    public override bool CanReadWithoutClear => true;

    /// <summary>The gate each read passes before it reports: held by tests, slowed by benchmarks.</summary>
    public ReportGate Reports { get; } = new();

    /// <summary>Makes the next <paramref name="count"/> reads fail (the tracker then faults).</summary>
    /// <param name="count">Reads to fail.</param>
    public void FailNextReads(int count = 1) => Volatile.Write(ref _failures, count);

    /// <summary>A write to one guest-physical address: logged while tracking.</summary>
    /// <param name="guestAddress">The address written.</param>
    /// <returns>Whether it was logged (tracking, covered, not disposed).</returns>
    public bool Write(ulong guestAddress)
    {
        if (!_logging || guestAddress - _coverage.Start >= _coverage.Length || !_writers.TryEnter())
        {
            return false;
        }

        try
        {
            _log.Mark(guestAddress / 4096);
            return true;
        }
        finally
        {
            _writers.Exit();
        }
    }

    /// <summary>Writes to a guest-physical range: logged while tracking, clipped to the coverage.</summary>
    /// <param name="guestAddress">The first address.</param>
    /// <param name="length">Bytes.</param>
    public void WriteRange(ulong guestAddress, ulong length)
    {
        AddressRange piece = new AddressRange(guestAddress, length).Intersect(_coverage);
        if (_logging && !piece.IsEmpty && _writers.TryEnter())
        {
            try
            {
                ulong first = piece.Start / 4096;
                _log.MarkRange(first, ((piece.End + 4095) / 4096) - first);
            }
            finally
            {
                _writers.Exit();
            }
        }
    }

    /// <inheritdoc/>
    protected override void OnStart()
    {
        var discard = default(Discard);
        _log.Harvest(ref discard); // a clean epoch, as enabling a real tracker starts one
        _logging = true;
    }

    /// <inheritdoc/>
    protected override void OnStop() => _logging = false;

    /// <inheritdoc/>
    protected override ulong ReadCore(AddressRange range, IDirtyGranuleSink sink, DirtyReadMode mode)
    {
        Reports.Pass();

        if (Volatile.Read(ref _failures) > 0 && Interlocked.Decrement(ref _failures) >= 0)
        {
            throw new InvalidOperationException("injected report failure");
        }

        AddressRange piece = range.Intersect(_coverage);
        ulong chunkBytes = (ulong)ChunkWords * 64 * 4096;
        ulong count = 0;
        for (ulong start = piece.Start; start < piece.End; start += Math.Min(chunkBytes, piece.End - start))
        {
            ulong bits = Math.Min(chunkBytes, piece.End - start) / 4096;
            Span<ulong> words = _scratch.AsSpan(0, (int)((bits + 63) / 64));
            words.Clear();
            var fill = new WordFill(_scratch, start / 4096);
            if (mode == DirtyReadMode.Clear)
            {
                _log.HarvestRange(start / 4096, bits, ref fill);
            }
            else
            {
                _log.PeekRange(start / 4096, bits, ref fill);
            }

            count += Deliver(words, bits, start, sink);
        }

        return count;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        // Writers do not take the tracker's lock: refuse new ones and wait out those in flight before freeing.
        _writers.Retire();
        _log.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>Accepts and forgets every run.</summary>
    private readonly struct Discard : IDirtyRunSink
    {
        public bool TryAccept(DirtyRun run) => true;
    }

    /// <summary>Sets the bits of runs in a kernel-format buffer whose bit 0 is <c>firstPage</c>, a word at a time.</summary>
    private readonly struct WordFill : IDirtyRunSink
    {
        private readonly ulong[] _words;
        private readonly ulong _firstPage;

        public WordFill(ulong[] words, ulong firstPage)
        {
            _words = words;
            _firstPage = firstPage;
        }

        public bool TryAccept(DirtyRun run)
        {
            for (ulong bit = run.FirstPage - _firstPage, end = run.EndPage - _firstPage; bit < end;)
            {
                int offset = (int)(bit & 63);
                int take = (int)Math.Min(64UL - (ulong)offset, end - bit);
                _words[bit >> 6] |= (take == 64 ? ~0UL : ((1UL << take) - 1)) << offset;
                bit += (ulong)take;
            }

            return true;
        }
    }
}
