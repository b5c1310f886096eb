// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;

namespace DirtyLog.Consumers;

/// <summary>
/// Several independent consumers of one set of trackers: a migration, a snapshot chain and a dirty-rate monitor can
/// each ask "what changed since I last asked" without taking pages from one another, while the trackers (the kernel)
/// are read once per round. Each round's dirty set is published once; every registered consumer receives it into
/// its own bitmap, and takes its changes from there when it likes.
/// </summary>
/// <remarks>
/// <para><b>Ordering contract, per consumer</b> (the shared bitmap's, with "published" for "marked"): every page of a
/// publication that completes before <see cref="DirtyConsumer.TakeChanges{TSink}(ref TSink)"/> starts is returned by
/// that call (or a later one, if its sink stops it early); a publication racing it is returned by it or the next;
/// a page is returned again only if it was published again (or put back) after it was returned; nothing is returned
/// that was never published. A consumer sees the publications from its registration on: register a snapshot chain's
/// consumer before taking its full base snapshot.</para>
/// <para><b>Cost.</b> A publication marks every consumer's bitmap once per run (a range mark: plain stores of whole
/// words); memory is one bitmap per consumer, as much as the shared one at most (32 MiB and 1.6% per fully dirty TiB
/// of 4 KiB pages), and only where pages were published.</para>
/// <para><b>Thread safety.</b> Every member may be called from any thread. <see cref="Publish"/>,
/// <see cref="Register"/> and a consumer's disposal are serialised by one lock (held for a publication's marks, not
/// while consumers take their changes); <see cref="DirtyConsumer.TakeChanges{TSink}(ref TSink)"/> takes no lock and
/// may run during a publication. <see cref="Dispose"/> must not race the other calls.</para>
/// </remarks>
public sealed class DirtyConsumerSet : IDisposable
{
    private readonly object _gate = new();
    private readonly int _addressWidth;
    private readonly long _pageSize;
    private readonly ulong _pageCount;
    private DirtyConsumer[] _consumers = [];
    private long _publications;
    private bool _disposed;

    /// <summary>Creates an empty set whose consumers cover the page space of a shared bitmap of this geometry.</summary>
    /// <param name="addressWidth">Bits of the byte address space, as the shared <see cref="SparseDirtyBitmap"/>'s.</param>
    /// <param name="pageSize">Bytes per page, as the shared bitmap's.</param>
    /// <exception cref="ArgumentOutOfRangeException">As <see cref="SparseDirtyBitmap(int, long)"/>'s.</exception>
    public DirtyConsumerSet(int addressWidth, long pageSize = 4096)
    {
        _pageCount = 1UL << SparseDirtyBitmap.PageBits(addressWidth, pageSize); // the bitmap's checks and messages
        _addressWidth = addressWidth;
        _pageSize = pageSize;
    }

    /// <summary>The consumers registered now.</summary>
    public IReadOnlyList<DirtyConsumer> Consumers
    {
        get
        {
            lock (_gate)
            {
                return _consumers;
            }
        }
    }

    /// <summary>Publications so far (each <see cref="Publish"/> or <see cref="Commit"/> counts one).</summary>
    public long Publications
    {
        get
        {
            lock (_gate)
            {
                return _publications;
            }
        }
    }

    /// <summary>Adds a consumer, which receives every publication from now on.</summary>
    /// <param name="name">A name for diagnostics (say "migration", "snapshots", "dirty rate").</param>
    /// <returns>The consumer; dispose it to leave the set.</returns>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty or already registered.</exception>
    /// <exception cref="ObjectDisposedException">The set was disposed.</exception>
    public DirtyConsumer Register(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            foreach (DirtyConsumer existing in _consumers)
            {
                if (existing.Name == name)
                {
                    throw new ArgumentException($"A consumer named '{name}' is registered already.", nameof(name));
                }
            }

            var consumer = new DirtyConsumer(this, name, new SparseDirtyBitmap(_addressWidth, _pageSize));
            _consumers = [.. _consumers, consumer];
            return consumer;
        }
    }

    /// <summary>Hands a dirty set to every registered consumer.</summary>
    /// <param name="runs">The runs, in the shared bitmap's page numbers.</param>
    /// <exception cref="ArgumentOutOfRangeException">A run ends past the page space; nothing was published.</exception>
    /// <exception cref="ObjectDisposedException">The set was disposed.</exception>
    public void Publish(ReadOnlySpan<DirtyRun> runs)
    {
        // Every run checked before any consumer is marked: a bad run must not leave the consumers disagreeing.
        foreach (DirtyRun run in runs)
        {
            if (run.EndPage > _pageCount || run.EndPage < run.FirstPage)
            {
                throw new ArgumentOutOfRangeException(nameof(runs), run,
                    $"The run [0x{run.FirstPage:x} +{run.PageCount:#,0}) ends past the page space of {_pageCount:#,0} pages; nothing was published.");
            }
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            foreach (DirtyConsumer consumer in _consumers)
            {
                consumer.Receive(runs);
            }

            _publications++;
        }
    }

    /// <summary>
    /// Publishes a harvested round to every consumer, then commits it: the round's pages leave the shared bitmap only
    /// once every consumer has them. A round of a harvester with <see cref="HarvesterOptions.ClearBeforeSend"/> has its
    /// pages re-protected in its trackers first (they count as sent once published).
    /// </summary>
    /// <remarks>
    /// For a round nobody else sends. A migration that sends the round itself (<c>PageStreamWriter.WriteRoundAsync</c>
    /// re-protects each chunk just before reading it) publishes it with <see cref="Publish"/> and settles it as usual:
    /// re-protecting its pages a second time, after the send, would drop a write that came between the two.
    /// </remarks>
    /// <param name="round">A round from <see cref="ParallelHarvester.RunRound(TimeSpan?, System.Threading.CancellationToken)"/>, not yet settled.</param>
    /// <exception cref="ArgumentNullException"><paramref name="round"/> is null.</exception>
    /// <exception cref="InvalidOperationException">The round was committed or put back already; nothing was published.</exception>
    /// <exception cref="ObjectDisposedException">The set was disposed; the round is left as it was.</exception>
    public void Commit(HarvestRound round)
    {
        ArgumentNullException.ThrowIfNull(round);
        if (round.IsCommitted || round.IsPutBack)
        {
            throw new InvalidOperationException($"Round {round.Number} is settled already: its runs are gone.");
        }

        // A harvester with ClearBeforeSend left the round's pages logged in its trackers: re-protect exactly them now,
        // since the consumers read memory only after this (a write from here on is logged for the next round).
        foreach (DirtyRun run in round.Runs)
        {
            round.ClearBeforeSend(run.FirstPage, run.PageCount);
        }

        Publish(round.Runs);
        round.Commit();
    }

    /// <summary>Disposes every consumer and their bitmaps. Must not race the other calls.</summary>
    public void Dispose()
    {
        DirtyConsumer[] consumers;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            consumers = _consumers;
            _consumers = [];
        }

        foreach (DirtyConsumer consumer in consumers)
        {
            consumer.ReleaseBitmap();
        }
    }

    /// <summary>Removes <paramref name="consumer"/> (its disposal): no publication reaches it afterwards.</summary>
    internal void Unregister(DirtyConsumer consumer)
    {
        lock (_gate)
        {
            int index = Array.IndexOf(_consumers, consumer);
            if (index < 0)
            {
                return;
            }

            var rest = new DirtyConsumer[_consumers.Length - 1];
            Array.Copy(_consumers, 0, rest, 0, index);
            Array.Copy(_consumers, index + 1, rest, index, rest.Length - index);
            _consumers = rest;
        }
    }
}
