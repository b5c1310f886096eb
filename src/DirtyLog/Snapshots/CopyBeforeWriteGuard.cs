// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.Versioning;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;

namespace DirtyLog.Snapshots;

/// <summary>
/// Lets the guest run while a snapshot link is written: the link's pages are write-protected in the pause
/// (<see cref="Protect"/>, <see cref="ProtectAll"/>), and after resume the writer copies them page chunk by page
/// chunk; a write that reaches a page not yet copied waits while that page alone is copied first (copy before write,
/// as QEMU's background snapshot does). The link holds memory as it was at the protection, byte for byte.
/// </summary>
/// <remarks>
/// <para>How: a synchronous userfaultfd registered over guest memory in write-protect mode. A write to a protected
/// page, by a vCPU (KVM faults on the VMM's behalf) or by a thread of this process, stops in the kernel and is reported
/// to the guard's fault thread, which copies the page (and up to 31 protected pages after it that the writer has not
/// taken, since writes often come in order) into a shadow mapping laid out as guest memory, then unprotects them,
/// which lets the write go on. The writer (<see cref="SnapshotChainWriter.WriteProtectedAsync"/>) claims each
/// chunk of pages (at most 1 MiB), copies them into a staging buffer (from guest memory, or from the shadow for pages
/// the fault thread preserved) and writes the chunk from there; it unprotects what it copied in batches (runs at most 8
/// pages apart, up to 4 MiB of address space; a write to a page copied but still protected is let in by the fault
/// thread at once). Each page is
/// copied exactly once from guest memory, by whichever side claims it first (a per-page state, changed by
/// compare-and-exchange), while it is still protected.</para>
/// <para>Cost: the pause covers the harvest and one <c>UFFDIO_WRITEPROTECT</c> per run instead of the copy. After
/// resume, a write to a page of the link not yet copied waits for the fault thread (a round trip through the kernel and
/// a page copy). Memory: 1 MiB of staging; the shadow holds only the pages preserved by writes, until the link ends;
/// one state byte per page (untouched parts cost nothing).</para>
/// <para>Requirements: Linux; a userfaultfd that catches faults taken in the kernel (the process needs
/// <c>CAP_SYS_PTRACE</c> or <c>vm.unprivileged_userfaultfd = 1</c>); guest memory not registered with another
/// userfaultfd (an asynchronous write-protect tracker over the same memory makes the registration fail with EBUSY: keep
/// the pause that covers the copy there).</para>
/// <para>Thread safety: every member may be called from any thread. One link is protected at a time, from its
/// protection until its one writer finished it (written or failed: a failed link is released, so no write waits for
/// good); a second writer of the same link is refused. Protection, each chunk's copy, the link's end and
/// <see cref="Dispose"/> are serialised by one lock, the guard's only one (the fault thread takes it only to give the
/// pages back after it failed); so disposing during a write releases the link and fails the write with
/// <see cref="ObjectDisposedException"/>, never reading freed memory. The fault thread is the guard's own; the counters
/// are read with atomics.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed partial class CopyBeforeWriteGuard : IDisposable
{
    // A page's state: every transition but the writer's release is a compare-and-exchange, so a page is copied once.
    private const byte Idle = 0;       // not part of the link being written (or written already)
    private const byte Protected = 1;  // write-protected, not copied
    private const byte Claimed = 2;    // the writer reads it (in place or into staging), then lets it go
    private const byte Preserving = 3; // the fault thread copies it, then unprotects it
    private const byte Preserved = 4;  // copied by the fault thread, unprotected: the shadow holds it
    private const byte Copied = 5;     // copied by the writer, its unprotect pending (batched): a write may be let in

    private readonly GuestMemoryView _memory;
    private readonly int _pageSize;
    private readonly ulong _pages;
    private readonly UserfaultfdContext _uffd;
    private readonly AnonymousMapping _states;
    private readonly AnonymousMapping _shadow;
    private readonly GuestMemoryView _shadowView;
    private readonly byte[] _staging;    // one chunk of pages, as the writer reads them (pinned, reused)
    private ulong _pendingFrom = ulong.MaxValue, _pendingTo; // pages copied by the writer, not yet unprotected
    private long _preservedAtLinkStart;  // the count of pages preserved when the link was protected
    private int _writeWaitsOnClaimed;     // 1: a write waits on a page the writer holds; its next let-go unprotects at once
    private readonly Thread _faultThread;
    private readonly Lock _gate = new(); // serialises protection, release and dispose
    private DirtyRun[]? _link;          // the runs of the link protected and not yet finished
    private bool _linkIsFull;
    private bool _linkBeingWritten;     // a writer took the link (one writer per link)
    private volatile bool _stopping;
    private volatile Exception? _faultError;
    private long _pagesCopiedOnWrite;
    private long _faultsServed;
    private bool _disposed;

    /// <summary>Registers <paramref name="memory"/> for write protection and starts the fault thread.</summary>
    /// <param name="memory">Guest memory: page-aligned, mapped by this process (a KVM slot's memory or the VMM's own).</param>
    /// <param name="pageSize">Bytes per page, as the snapshot chain's: a power of two from 4 KiB that divides the memory size.</param>
    /// <exception cref="ArgumentNullException"><paramref name="memory"/> is null.</exception>
    /// <exception cref="ArgumentException">The memory is not aligned to <paramref name="pageSize"/>, or the page size breaks its rule.</exception>
    /// <exception cref="KernelException">
    /// The userfaultfd could not be made (EPERM: the process may not catch faults taken in the kernel) or registered
    /// (EBUSY: another userfaultfd has the memory; EINVAL: memory that cannot be write-protected).
    /// </exception>
    public CopyBeforeWriteGuard(GuestMemoryView memory, int pageSize = 4096)
    {
        ArgumentNullException.ThrowIfNull(memory);
        if (pageSize < 4096 || !System.Numerics.BitOperations.IsPow2(pageSize) || memory.Size % (ulong)pageSize != 0 || memory.Address % pageSize != 0)
        {
            throw new ArgumentException($"Guest memory at 0x{memory.Address:x} of {memory.Size:N0} bytes cannot be guarded in pages of {pageSize} bytes: the page size must be a power of two from 4096 that divides the size and aligns the address.", nameof(pageSize));
        }

        _memory = memory;
        _pageSize = pageSize;
        _pages = memory.Size / (ulong)pageSize;
        _uffd = UserfaultfdContext.CreateWriteProtect();
        try
        {
            _uffd.RegisterWriteProtect(memory.Address, memory.Size);
            _states = new AnonymousMapping((_pages + 4095) & ~4095UL);
            _shadow = new AnonymousMapping(memory.Size);
            try
            {
                _shadow.SetHugePages(false); // a preserved page here and there must not cost a huge page each
            }
            catch (KernelException)
            {
                // A kernel without transparent huge pages refuses the advice: there is nothing to prevent then.
            }
        }
        catch
        {
            _shadow?.Dispose();
            _states?.Dispose();
            _uffd.Dispose();
            throw;
        }

        _shadowView = new GuestMemoryView(_shadow.Address, memory.Size);
        _staging = GC.AllocateUninitializedArray<byte>(Math.Max(1 << 20, pageSize), pinned: true);
        _faultThread = new Thread(ServeFaults) { IsBackground = true, Name = "DirtyLog copy-before-write" };
        _faultThread.Start();
    }

    /// <summary>The guest memory guarded.</summary>
    public GuestMemoryView Memory => _memory;

    /// <summary>Bytes per page.</summary>
    public int PageSize => _pageSize;

    /// <summary>Whether a link is protected and not yet finished by a writer.</summary>
    public bool HasProtectedLink
    {
        get
        {
            lock (_gate)
            {
                return _link is not null;
            }
        }
    }

    /// <summary>
    /// Pages the fault thread copied before the writer got to them, over the guard's life: each page a write reached
    /// first, with the still-protected pages after it that were copied along (up to 32 per fault).
    /// </summary>
    public long PagesCopiedOnWrite => Interlocked.Read(ref _pagesCopiedOnWrite);

    /// <summary>Write faults the fault thread served, over the guard's life (a page written by several threads at once reports several).</summary>
    public long FaultsServed => Interlocked.Read(ref _faultsServed);

    /// <summary>
    /// In the pause, after the final harvest: write-protects the pages of a diff (what the chain's consumer took), so
    /// that the guest may resume before they are copied.
    /// </summary>
    /// <param name="runs">The pages, in page numbers of <see cref="PageSize"/>: inside memory, not overlapping (empty runs are ignored).</param>
    /// <exception cref="InvalidOperationException">A link is protected and not finished yet.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A run leaves memory.</exception>
    /// <exception cref="ArgumentException">Runs overlap.</exception>
    /// <exception cref="KernelException">Write protection failed (nothing stays protected).</exception>
    /// <exception cref="ObjectDisposedException">The guard was disposed.</exception>
    public void Protect(IReadOnlyList<DirtyRun> runs)
    {
        ArgumentNullException.ThrowIfNull(runs);
        DirtyRun[] sorted = [.. runs.Where(static run => run.PageCount != 0)]; // an empty run protects nothing (and the kernel refuses an empty range)
        Array.Sort(sorted, static (a, b) => a.FirstPage.CompareTo(b.FirstPage));
        for (int i = 0; i < sorted.Length; i++)
        {
            DirtyRun run = sorted[i];
            if (run.FirstPage >= _pages || run.PageCount > _pages - run.FirstPage)
            {
                throw new ArgumentOutOfRangeException(nameof(runs), run, $"The run leaves the {_pages:N0} pages of guest memory.");
            }

            if (i > 0 && sorted[i - 1].EndPage > run.FirstPage)
            {
                throw new ArgumentException($"Runs {sorted[i - 1]} and {run} overlap: a page is protected and copied once.", nameof(runs));
            }
        }

        ProtectLink(sorted, full: false);
    }

    /// <summary>In the pause: write-protects all of memory, for a full snapshot written after resume.</summary>
    /// <exception cref="InvalidOperationException">A link is protected and not finished yet.</exception>
    /// <exception cref="KernelException">Write protection failed (nothing stays protected).</exception>
    /// <exception cref="ObjectDisposedException">The guard was disposed.</exception>
    public void ProtectAll() => ProtectLink([new DirtyRun(0, _pages)], full: true);

    /// <summary>Stops the fault thread, releases a link in flight (its pages are unprotected) and closes the userfaultfd.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            ReleaseLink();
        }

        _stopping = true;
        _uffd.Interrupt();
        _faultThread.Join();
        _uffd.Dispose(); // unregisters the memory
        _states.Dispose();
        _shadow.Dispose();
    }

    /// <summary>A writer takes the link protected now: its runs and whether it is all of memory. It must end it with <see cref="FinishLink"/>.</summary>
    /// <exception cref="InvalidOperationException">No link is protected, or another writer has it.</exception>
    /// <exception cref="ObjectDisposedException">The guard was disposed.</exception>
    internal DirtyRun[] BeginWrite(out bool full)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            DirtyRun[] runs = _link ?? throw new InvalidOperationException("No link is protected: call Protect (or ProtectAll) in the pause first.");
            if (_linkBeingWritten)
            {
                throw new InvalidOperationException("The protected link is being written by another writer: one writer per link.");
            }

            _linkBeingWritten = true;
            full = _linkIsFull;
            return runs;
        }
    }

    /// <summary>The chunk source a page stream reads the protected link through.</summary>
    internal IPageChunkSource ChunkSource => new LinkReader(this);

    /// <summary>The most pages a chunk may hold (the staging buffer's size).</summary>
    internal int MaxChunkPages => _staging.Length / _pageSize;

    /// <summary>After the writer: unprotects what is pending (or, if the write failed, all of the link) and ends the link.</summary>
    /// <param name="written">Every page of the link went through the writer.</param>
    internal void FinishLink(bool written)
    {
        lock (_gate)
        {
            if (written && _link is { } runs && _faultError is null)
            {
                FlushUnprotects();
                _link = null;
                _linkBeingWritten = false;
                DiscardShadow(runs);
                return;
            }

            ReleaseLink();
        }
    }

    private void ProtectLink(DirtyRun[] runs, bool full)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_link is not null)
            {
                throw new InvalidOperationException("A link is protected and not written yet: one link at a time.");
            }

            int protectedRuns = 0;
            try
            {
                foreach (DirtyRun run in runs)
                {
                    FillStates(run.FirstPage, run.PageCount, Protected); // before the protection, so that any fault finds its page's state
                    Interlocked.MemoryBarrier();
                    _uffd.WriteProtect(AddressOf(run.FirstPage), run.PageCount * (ulong)_pageSize, protect: true);
                    protectedRuns++;
                }
            }
            catch
            {
                for (int i = 0; i <= protectedRuns && i < runs.Length; i++)
                {
                    _uffd.WriteProtect(AddressOf(runs[i].FirstPage), runs[i].PageCount * (ulong)_pageSize, protect: false);
                    FillStates(runs[i].FirstPage, runs[i].PageCount, Idle);
                }

                throw;
            }

            _link = runs;
            _linkIsFull = full;
            _pendingFrom = ulong.MaxValue;
            _preservedAtLinkStart = Interlocked.Read(ref _pagesCopiedOnWrite);
        }
    }

    /// <summary>Unprotects every page of the link (waking any write that waits) and frees the shadow; the caller holds the gate.</summary>
    private void ReleaseLink()
    {
        if (_link is not { } runs)
        {
            return;
        }

        _link = null;
        _linkBeingWritten = false;
        _pendingFrom = ulong.MaxValue;
        foreach (DirtyRun run in runs)
        {
            _uffd.WriteProtect(AddressOf(run.FirstPage), run.PageCount * (ulong)_pageSize, protect: false);
            for (ulong page = run.FirstPage; page < run.EndPage; page++)
            {
                var spin = default(SpinWait);
                while (Volatile.Read(ref State(page)) == Preserving)
                {
                    spin.SpinOnce(); // the fault thread is mid-copy of this page: let it finish before the shadow goes
                }
            }

            FillStates(run.FirstPage, run.PageCount, Idle);
        }

        DiscardShadow(runs);
    }

    /// <summary>Gives back the shadow's pages, if a write preserved any during the link (one call over the link's span).</summary>
    private void DiscardShadow(DirtyRun[] runs)
    {
        if (runs.Length != 0 && Interlocked.Read(ref _pagesCopiedOnWrite) != _preservedAtLinkStart)
        {
            ulong first = runs[0].FirstPage, end = runs[^1].EndPage;
            _shadow.Discard(first * (ulong)_pageSize, (end - first) * (ulong)_pageSize);
        }
    }

    private nint AddressOf(ulong page) => _memory.Address + (nint)(page * (ulong)_pageSize);

    private unsafe ref byte State(ulong page) => ref *((byte*)_states.Address + page);

    private unsafe void FillStates(ulong firstPage, ulong count, byte value)
    {
        for (ulong done = 0; done < count;)
        {
            int step = (int)Math.Min(count - done, 1UL << 30);
            new Span<byte>((byte*)_states.Address + firstPage + done, step).Fill(value);
            done += (ulong)step;
        }
    }
}
