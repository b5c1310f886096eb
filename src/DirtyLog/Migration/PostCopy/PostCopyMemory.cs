// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.Versioning;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Native;

namespace DirtyLog.Migration.PostCopy;

/// <summary>
/// A post-copy destination's guest memory: after the switch-over the guest runs here before every page arrived. The
/// pages the source dirtied after it sent them (the discard list) are dropped and the whole memory is registered with
/// a missing-mode userfaultfd, so a touch of a page not valid here (by a vCPU through KVM, or by a thread of the VMM)
/// waits while this object asks the source for it (<see cref="IPostCopyPageRequests"/>); each page the source sends,
/// requested or pushed, is installed with <c>UFFDIO_COPY</c>, which wakes the threads that wait on it. A page that
/// arrives twice (requested and pushed at once) is installed once.
/// </summary>
/// <remarks>
/// <para>Valid pages are those pre-copy applied and the source did not dirty after: they stay as they are, and a valid
/// page that has no memory yet (a zero page a destination that starts zeroed never wrote) is filled with a zero page
/// on its first touch, with no request.</para>
/// <para>Memory must be anonymous private memory (an <see cref="AnonymousMapping"/>): a dropped page then faults again.
/// The page size is the system's (4 KiB).</para>
/// <para>Who may touch a missing page: a vCPU (its access faults inside <c>KVM_RUN</c>, a system call) and native code
/// (a P/Invoke copy). A managed thread of the VMM must not read or write guest memory that may be missing in managed
/// code (a span over it): waiting on the fault there, it cannot be suspended, and the next garbage collection would
/// wait for it, and with it every thread that serves the fault. Copy through native code instead.</para>
/// <para>Thread safety: <see cref="Install"/>, <see cref="InstallZeroPages"/>, <see cref="Statistics"/> and
/// <see cref="WhenComplete"/> from any thread, at once. One thread of its own reads the faults. The state lock
/// (<c>_gate</c>) is taken after each kernel call, never across one, and nothing else is taken under it.
/// <see cref="Dispose"/> once every page is valid (<see cref="WhenComplete"/>) or with the guest stopped: closing
/// the userfaultfd lets a thread that waits read whatever memory is there.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed class PostCopyMemory : IDisposable
{
    private readonly GuestMemoryView _memory;
    private readonly ulong _pageSize = (ulong)Environment.SystemPageSize;
    private readonly ulong _pages;
    private readonly ulong[] _valid;      // a bit per page: its bytes here are the guest's; under _gate once started
    private readonly ulong[] _requested;  // a bit per page: asked of the source and not yet installed; under _gate
    private readonly Lock _gate = new();
    private readonly Dictionary<ulong, long> _requestedAt = [];        // page -> when it was asked; under _gate
    private readonly Dictionary<ulong, List<long>> _waiting = [];      // page -> when each fault on it was read; under _gate
    private readonly List<long> _latencies = [];                        // ticks from request to install; under _gate
    private readonly TaskCompletionSource _complete = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private const ulong DetachRunPages = 512; // 2 MiB: a run this long is moved away whole rather than freed in the downtime
    private const int MaxDetachedRuns = 1024;  // each detached run is a mapping of its own: keep well inside vm.max_map_count
    private static readonly TimeSpan FreeingIsCheap = TimeSpan.FromMicroseconds(40); // 2 MiB of 4 KiB pages takes 60 to 120 us

    private readonly List<DetachedPages> _detached = []; // the discarded pages' old copies, moved away by Start; under _gate after it
    private UserfaultfdContext? _faults;
    private IPostCopyPageRequests? _requests;
    private Thread? _reader;
    private volatile bool _stopping;
    private int _closing;
    private ulong _missing;
    private ulong _requestedCount, _installed, _twice, _zeroFilled; // under _gate
    private long _blockedTicks;                                      // under _gate

    /// <summary>Post-copy memory over <paramref name="memory"/>, its pages as pre-copy left them.</summary>
    /// <param name="memory">The destination's guest memory (anonymous private memory), from guest-physical address 0.</param>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    /// <exception cref="ArgumentException">The memory is not page-aligned or not a whole number of pages.</exception>
    public PostCopyMemory(GuestMemoryView memory)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (((ulong)memory.Address | memory.Size) % (ulong)Environment.SystemPageSize != 0 || memory.Size == 0)
        {
            throw new ArgumentException($"Post-copy memory is whole {Environment.SystemPageSize}-byte pages at a page boundary.", nameof(memory));
        }

        _memory = memory;
        _pages = memory.Size / _pageSize;
        _valid = new ulong[(_pages + 63) / 64];
        _requested = new ulong[_valid.Length];
    }

    /// <summary>Pages of the memory.</summary>
    public ulong Pages => _pages;

    /// <summary>Completes once every page is valid here: post-copy is over, and the userfaultfd may go.</summary>
    public Task WhenComplete => _complete.Task;

    /// <summary>What was requested, installed and waited for so far.</summary>
    public PostCopyStatistics Statistics
    {
        get
        {
            lock (_gate)
            {
                long[] sorted = [.. _latencies];
                Array.Sort(sorted);
                return new PostCopyStatistics(_requestedCount, _installed, _twice, _zeroFilled, _missing,
                    sorted.Length == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(0, sorted[sorted.Length / 2]),
                    sorted.Length == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(0, sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * 0.99))]),
                    Stopwatch.GetElapsedTime(0, _blockedTicks));
            }
        }
    }

    /// <summary>
    /// The pages not valid here yet, as runs in order: what a source must still send when post-copy resumes on new
    /// connections after a cut (it sends exactly these, whatever it had sent before).
    /// </summary>
    /// <returns>The runs; none once every page is here.</returns>
    public DirtyRun[] MissingRuns()
    {
        var runs = new List<DirtyRun>();
        lock (_gate) // a word at a time: the fault thread waits on this lock, and valid words (most) are skipped whole
        {
            ulong first = 0, count = 0;
            for (int w = 0; w < _valid.Length; w++)
            {
                ulong inMemory = w == _valid.Length - 1 && _pages % 64 != 0 ? (1UL << (int)(_pages % 64)) - 1 : ulong.MaxValue;
                ulong missing = ~_valid[w] & inMemory;
                while (missing != 0)
                {
                    int bit = System.Numerics.BitOperations.TrailingZeroCount(missing);
                    int length = System.Numerics.BitOperations.TrailingZeroCount(~(missing >> bit)); // 64 when the rest of the word is missing
                    ulong page = ((ulong)w * 64) + (ulong)bit;
                    if (count != 0 && first + count == page)
                    {
                        count += (ulong)length;
                    }
                    else
                    {
                        if (count != 0)
                        {
                            runs.Add(new DirtyRun(first, count));
                        }

                        (first, count) = (page, (ulong)length);
                    }

                    missing = bit + length >= 64 ? 0 : missing & (ulong.MaxValue << (bit + length));
                }
            }

            if (count != 0)
            {
                runs.Add(new DirtyRun(first, count));
            }
        }

        return [.. runs];
    }

    /// <summary>Pages asked of the source and not installed yet: after a cut, asked again on the new connection.</summary>
    internal ulong[] OutstandingRequests()
    {
        lock (_gate)
        {
            return [.. _requestedAt.Keys];
        }
    }

    /// <summary>
    /// Begins post-copy: registers the memory in missing mode, drops the pages of <paramref name="discarded"/> (the
    /// source wrote them after it sent them: the copies here are stale; long runs of 4 KiB pages are moved away whole
    /// and freed by <see cref="ReleaseDiscardedPages"/>) and serves faults from now on. Call it before
    /// the guest resumes here.
    /// </summary>
    /// <param name="discarded">The pages not valid here, from the source's switch-over.</param>
    /// <param name="requests">Where requests for missing pages go.</param>
    /// <exception cref="ArgumentNullException"><paramref name="requests"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A run leaves the memory.</exception>
    /// <exception cref="InvalidOperationException">Started already.</exception>
    /// <exception cref="KernelException">The userfaultfd could not be made or registered (EPERM: the process may not catch faults taken in the kernel).</exception>
    public void Start(ReadOnlySpan<DirtyRun> discarded, IPostCopyPageRequests requests)
    {
        ArgumentNullException.ThrowIfNull(requests);
        if (_faults is not null)
        {
            throw new InvalidOperationException("Post-copy memory starts once.");
        }

        foreach (DirtyRun run in discarded)
        {
            if (run.EndPage > _pages)
            {
                throw new ArgumentOutOfRangeException(nameof(discarded), run, $"The run leaves the {_pages:N0} pages of memory.");
            }
        }

        UserfaultfdContext faults = UserfaultfdContext.CreateMissing();
        try
        {
            // Registered before any page is dropped: a dropped page touched in between would get a fresh zero page.
            faults.RegisterMissing(_memory.Address, _memory.Size);
            Array.Fill(_valid, ulong.MaxValue);
            if (_pages % 64 != 0)
            {
                _valid[^1] = (1UL << (int)(_pages % 64)) - 1;
            }

            foreach (DirtyRun run in discarded)
            {
                for (ulong page = run.FirstPage; page < run.EndPage; page++)
                {
                    if (TestAndSet(_valid, page, false))
                    {
                        _missing++;
                    }
                }

                Drop(_memory.Address + (nint)(run.FirstPage * _pageSize), run.PageCount * _pageSize);
            }
        }
        catch
        {
            faults.Dispose();
            ReleaseDiscardedPages();
            throw;
        }

        _faults = faults;
        _requests = requests;
        if (_missing == 0)
        {
            _complete.TrySetResult();
        }

        _reader = new Thread(ReadFaults) { IsBackground = true, Name = "DirtyLog post-copy faults" };
        _reader.Start();
    }

    /// <summary>
    /// Empties a discarded run the cheaper way. Freeing pages costs about 0.1 us each when they are 4 KiB pages, next
    /// to nothing for transparent huge pages or pages never touched; moving the pages away whole (to free them after
    /// the resume) costs about 2 to 4 ms per 256 MiB either way. So the first 2 MiB of a long run is freed and timed:
    /// quick, and the rest is freed as well; slow, and the rest is moved away. Correct either way: only the cost differs.
    /// </summary>
    private void Drop(nint start, ulong bytes)
    {
        ulong probe = DetachRunPages * _pageSize;
        if (bytes < 2 * probe || _detached.Count >= MaxDetachedRuns)
        {
            UserfaultfdContext.DropPages(start, bytes);
            return;
        }

        long began = Stopwatch.GetTimestamp();
        UserfaultfdContext.DropPages(start, probe);
        if (Stopwatch.GetElapsedTime(began) > FreeingIsCheap && UserfaultfdContext.DetachPages(start + (nint)probe, bytes - probe) is { } detached)
        {
            _detached.Add(detached); // freed later, off the downtime (ReleaseDiscardedPages)
        }
        else
        {
            UserfaultfdContext.DropPages(start + (nint)probe, bytes - probe);
        }
    }

    /// <summary>
    /// Installs pages the source sent (requested or pushed) from <paramref name="firstPage"/> and wakes the threads that
    /// wait on them; a page installed already is left as it is.
    /// </summary>
    /// <param name="firstPage">The first page.</param>
    /// <param name="bytes">Whole pages of bytes.</param>
    /// <returns>Pages installed now (the others were there already).</returns>
    /// <exception cref="ArgumentOutOfRangeException">The pages leave the memory, or the bytes are not whole pages.</exception>
    /// <exception cref="InvalidOperationException">Not started.</exception>
    public ulong Install(ulong firstPage, ReadOnlySpan<byte> bytes)
    {
        UserfaultfdContext faults = Started();
        ulong count = CheckPages(firstPage, (ulong)bytes.Length);
        ulong installed = faults.Copy(_memory.Address + (nint)(firstPage * _pageSize), bytes) / _pageSize;
        Settle(firstPage, count, installed);
        return installed;
    }

    /// <summary>Installs zero pages (the source's pages read zero) from <paramref name="firstPage"/>, as <see cref="Install"/>.</summary>
    /// <param name="firstPage">The first page.</param>
    /// <param name="count">Pages.</param>
    /// <returns>Pages installed now.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The pages leave the memory.</exception>
    /// <exception cref="InvalidOperationException">Not started.</exception>
    public ulong InstallZeroPages(ulong firstPage, ulong count)
    {
        UserfaultfdContext faults = Started();
        CheckPages(firstPage, count * _pageSize);
        ulong installed = faults.InstallZeroPages(_memory.Address + (nint)(firstPage * _pageSize), count * _pageSize) / _pageSize;
        Settle(firstPage, count, installed);
        return installed;
    }

    /// <summary>
    /// Frees the old copies of the discarded pages: <see cref="Start"/> moves long runs of them out of the way in one
    /// step (freeing 256 MiB of pages would cost about 10 ms of downtime) and keeps them until this call. Call it once
    /// the guest runs, from any thread; <see cref="Dispose"/> calls it too. Calling it again does nothing.
    /// </summary>
    public void ReleaseDiscardedPages()
    {
        DetachedPages[] pages;
        lock (_gate)
        {
            pages = [.. _detached];
            _detached.Clear();
        }

        foreach (DetachedPages detached in pages)
        {
            detached.Dispose();
        }
    }

    /// <summary>Stops serving faults and closes the userfaultfd (see the remarks for when); calling it again does nothing.</summary>
    public void Dispose()
    {
        _stopping = true;
        if (Interlocked.Exchange(ref _closing, 1) == 0 && _faults is { } faults)
        {
            faults.Interrupt();
            _reader?.Join();
            faults.Dispose();
        }

        ReleaseDiscardedPages();
    }

    /// <summary>The fault thread: a fault on a missing page is requested once; one on a valid page that has no memory gets a zero page.</summary>
    private void ReadFaults()
    {
        UserfaultfdContext faults = _faults!;
        var read = new UserfaultfdFault[16];
        while (!_stopping)
        {
            int count = faults.ReadFaults(read, -1);
            for (int i = 0; i < count; i++)
            {
                ulong offset = read[i].Address - (ulong)_memory.Address;
                if (offset >= _memory.Size)
                {
                    continue; // not ours: nothing else is registered on this descriptor
                }

                ulong page = offset / _pageSize;
                long now = Stopwatch.GetTimestamp();
                bool valid, ask = false;
                lock (_gate)
                {
                    valid = Test(_valid, page);
                    if (!valid)
                    {
                        if (!_waiting.TryGetValue(page, out List<long>? waiters))
                        {
                            _waiting[page] = waiters = [];
                        }

                        waiters.Add(now);
                        if (TestAndSet(_requested, page, true))
                        {
                            _requestedAt[page] = now;
                            _requestedCount++;
                            ask = true;
                        }
                    }
                }

                if (valid)
                {
                    // Valid but without memory (a zero page never written here), or installed since the fault was queued.
                    if (faults.InstallZeroPages(_memory.Address + (nint)(page * _pageSize), _pageSize) != 0)
                    {
                        lock (_gate)
                        {
                            _zeroFilled++;
                        }
                    }
                }
                else if (ask)
                {
                    _requests!.Request(page);
                }
            }
        }
    }

    /// <summary>After an install: the pages are valid, their waiters and requests settled, the counts kept.</summary>
    private void Settle(ulong firstPage, ulong count, ulong installed)
    {
        long now = Stopwatch.GetTimestamp();
        long[] answered; // request latencies settled now, for the meter
        lock (_gate)
        {
            int before = _latencies.Count;
            _installed += installed;
            _twice += count - installed;
            for (ulong page = firstPage; page < firstPage + count; page++)
            {
                if (TestAndSet(_valid, page, true))
                {
                    _missing--;
                }

                if (TestAndSet(_requested, page, false) && _requestedAt.Remove(page, out long asked))
                {
                    _latencies.Add(now - asked);
                }

                if (_waiting.Remove(page, out List<long>? waiters))
                {
                    foreach (long since in waiters)
                    {
                        _blockedTicks += now - since;
                    }
                }
            }

            if (_missing == 0)
            {
                _complete.TrySetResult();
            }

            answered = _latencies.Count == before ? [] : _latencies.GetRange(before, _latencies.Count - before).ToArray();
        }

        // Recorded outside the lock: a meter's listeners are not this lock's to wait on.
        foreach (long ticks in answered)
        {
            Sessions.MigrationTelemetry.PostCopyRequestInstalled(Stopwatch.GetElapsedTime(0, ticks));
        }
    }

    private UserfaultfdContext Started()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _closing) != 0, this);
        return _faults ?? throw new InvalidOperationException("Post-copy memory installs pages once started.");
    }

    private ulong CheckPages(ulong firstPage, ulong bytes)
    {
        ulong count = bytes / _pageSize;
        if (bytes % _pageSize != 0 || count == 0 || firstPage >= _pages || count > _pages - firstPage)
        {
            throw new ArgumentOutOfRangeException(nameof(firstPage), firstPage, $"{bytes:N0} bytes from page {firstPage:N0}: not whole pages inside the {_pages:N0} of memory.");
        }

        return count;
    }

    private static bool Test(ulong[] bits, ulong page) => (bits[page >> 6] & (1UL << (int)(page & 63))) != 0;

    /// <summary>Sets or clears a bit; whether it changed.</summary>
    private static bool TestAndSet(ulong[] bits, ulong page, bool value)
    {
        ulong mask = 1UL << (int)(page & 63);
        bool was = (bits[page >> 6] & mask) != 0;
        bits[page >> 6] = value ? bits[page >> 6] | mask : bits[page >> 6] & ~mask;
        return was != value;
    }
}
