// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading;
using DirtyLog.Memory;

namespace DirtyLog.Benchmarks.Migration.PostCopy;

/// <summary>
/// An unthrottled guest: one thread that sweeps its memory page by page, writing the pass number into each page's
/// first word, as fast as it can (each batch of 64 pages logged as written); a pass is one sweep. Every write goes through native code (a vCPU's store inside
/// <c>KVM_RUN</c> as far as a post-copy destination's missing pages are concerned: a managed thread must not wait on
/// them). A throttle slows it to a duty cycle of 10 ms slices, as QEMU's auto-converge slows vCPUs.
/// </summary>
/// <remarks>Thread safety: <see cref="Pause"/>, <see cref="Resume"/>, <see cref="Throttle"/> and <see cref="Passes"/> from any thread; <see cref="Dispose"/> once.</remarks>
internal sealed partial class SweepingGuest : IDisposable
{
    private const int PagesPerCheck = 64;
    private static readonly long Slice = Stopwatch.Frequency / 100; // 10 ms

    private readonly GuestMemoryView _memory;
    private readonly Action<ulong, ulong>? _logged;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _running = new(false);
    private volatile bool _stopping;
    private double _throttle; // the share of each slice it sleeps
    private long _passes;     // whole passes, and the fraction of the current one in pages (see Passes)
    private long _pagesInPass;
    private int _inside;      // 1 while it writes

    /// <param name="memory">Its memory.</param>
    /// <param name="name">Its thread's name.</param>
    /// <param name="logged">Told of each batch of pages written (first page, pages), before a pause can return: the dirty log, as PML or a dirty ring keeps it with no trap; <see langword="null"/> for none.</param>
    /// <param name="startPass">The pass it starts in (a destination's guest carries on from the source's).</param>
    public SweepingGuest(GuestMemoryView memory, string name, Action<ulong, ulong>? logged = null, long startPass = 0)
    {
        _memory = memory;
        _logged = logged;
        _passes = startPass;
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Passes made so far, fractions included.</summary>
    public double Passes => Interlocked.Read(ref _passes) + (double)Interlocked.Read(ref _pagesInPass) / (_memory.Size / 4096);

    /// <summary>The current throttle, 0 (none) to 0.99.</summary>
    public double Throttle
    {
        get => Volatile.Read(ref _throttle);
        set => Volatile.Write(ref _throttle, Math.Clamp(value, 0, 0.99));
    }

    public void Resume() => _running.Set();

    /// <summary>Stops it between two writes; returns once it is stopped.</summary>
    public void Pause()
    {
        _running.Reset();
        while (Volatile.Read(ref _inside) != 0)
        {
            Thread.SpinWait(20);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        _running.Set();
        _thread.Join();
        _running.Dispose();
    }

    private void Run()
    {
        ulong pages = _memory.Size / 4096;
        long sliceStart = Stopwatch.GetTimestamp();
        while (!_stopping)
        {
            _running.Wait();
            Interlocked.Exchange(ref _inside, 1); // a full fence: a pause's reset is seen below, or it sees this

            if (!_running.IsSet || _stopping)
            {
                Volatile.Write(ref _inside, 0);
                continue;
            }

            long pass = Interlocked.Read(ref _passes);
            ulong first = (ulong)Interlocked.Read(ref _pagesInPass);
            ulong end = Math.Min(pages, first + PagesPerCheck);
            for (ulong page = first; page < end; page++)
            {
                long value = pass;
                Copy(_memory.Address + (nint)(page * 4096), ref value, sizeof(long));
            }

            _logged?.Invoke(first, end - first);
            if (end == pages)
            {
                Interlocked.Exchange(ref _pagesInPass, 0);
                Interlocked.Increment(ref _passes);
            }
            else
            {
                Interlocked.Exchange(ref _pagesInPass, (long)end);
            }

            Volatile.Write(ref _inside, 0);
            double throttle = Throttle;
            long now = Stopwatch.GetTimestamp();
            if (throttle > 0 && now - sliceStart >= (long)(Slice * (1 - throttle)))
            {
                Thread.Sleep(TimeSpan.FromSeconds(throttle * Slice / Stopwatch.Frequency));
                sliceStart = Stopwatch.GetTimestamp();
            }
            else if (throttle == 0)
            {
                sliceStart = now;
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "memcpy")]
    private static partial nint Copy(nint destination, ref long source, nuint bytes);
}
