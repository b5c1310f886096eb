// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration.PostCopy;
using DirtyLog.Native;

namespace DirtyLog.Tests.Migration.PostCopy;

/// <summary>
/// A source's memory and a destination as pre-copy left it: every page but the zero pages (never written there),
/// and the discarded pages stale (the source wrote them after it sent them; some of those read zero now).
/// </summary>
internal sealed class PostCopyRig : IDisposable
{
    public const ulong Pages = 4096;
    public const ulong PageBytes = 4096;

    private readonly AnonymousMapping _source = new(Pages * PageBytes);
    private readonly AnonymousMapping _destination = new(Pages * PageBytes);
    private readonly int _seed;

    /// <summary>Skips the test where the process may not catch faults taken in the kernel (no privilege, or no userfaultfd).</summary>
    public static void RequireUserfaultfd()
    {
        try
        {
            UserfaultfdContext.CreateMissing().Dispose();
        }
        catch (KernelException e)
        {
            NUnit.Framework.Assume.That(false, $"a userfaultfd that catches faults taken in the kernel is not available: {e.Message}");
        }
    }

    /// <param name="seed">The pages' bytes, and the guest's touches.</param>
    /// <param name="longRun">Whether a run of 1,024 stale pages (4 MiB, long enough to be moved away whole) lies among the single ones.</param>
    public PostCopyRig(int seed, bool longRun = false)
    {
        _seed = seed;
        Source = new GuestMemoryView(_source.Address, Pages * PageBytes);
        Destination = new GuestMemoryView(_destination.Address, Pages * PageBytes);
        var random = new Random(seed);
        var discarded = new List<DirtyRun>();
        for (ulong page = 0; page < Pages; page++)
        {
            bool zero = page % 8 == 3 || page % 40 == 10;
            if (!zero)
            {
                random.NextBytes(Source.Slice(page * PageBytes, (int)PageBytes));
            }

            bool stale = page % 5 == 0 || (longRun && page - Pages / 4 < 1024);
            if (stale)
            {
                random.NextBytes(Destination.Slice(page * PageBytes, (int)PageBytes)); // what was sent before the source wrote it again
                if (discarded.Count > 0 && discarded[^1].EndPage == page)
                {
                    discarded[^1] = new DirtyRun(discarded[^1].FirstPage, discarded[^1].PageCount + 1);
                }
                else
                {
                    discarded.Add(new DirtyRun(page, 1));
                }
            }
            else if (!zero)
            {
                Source.Slice(page * PageBytes, (int)PageBytes).CopyTo(Destination.Slice(page * PageBytes, (int)PageBytes));
            }
        }

        Discarded = [.. discarded];
    }

    public GuestMemoryView Source { get; }

    public GuestMemoryView Destination { get; }

    public DirtyRun[] Discarded { get; }

    /// <summary>What the source sends for a page: its bytes, or a zero page.</summary>
    public void Send(PostCopyMemory memory, ulong page)
    {
        ReadOnlySpan<byte> bytes = Source.Slice(page * PageBytes, (int)PageBytes);
        if (bytes.IndexOfAnyExcept((byte)0) < 0)
        {
            memory.InstallZeroPages(page, 1);
        }
        else
        {
            memory.Install(page, bytes);
        }
    }

    /// <summary>
    /// A guest thread: reads pages (each must be the source's, or its own write), writes a word into some. It touches
    /// guest memory only through native copies, as a vCPU does inside <c>KVM_RUN</c>: a managed thread that waits on a
    /// missing page in managed code cannot be suspended, and the next garbage collection would wait for it for ever.
    /// </summary>
    /// <returns>The first wrong page read, or <see langword="null"/>.</returns>
    public unsafe string? RunGuest(int thread, Barrier start, HashSet<ulong> written)
    {
        var random = new Random(_seed * 31 + thread);
        byte* copy = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)PageBytes);
        try
        {
            start.SignalAndWait();
            for (int i = 0; i < 3000; i++)
            {
                ulong page = (ulong)random.Next((int)Pages / 2) * 2 + (ulong)thread; // each thread its own pages: its writes are its own
                nint at = Destination.Address + (nint)(page * PageBytes);
                Memcpy((nint)copy, at, (nuint)PageBytes); // a touch of a missing page waits here, in native code
                if (!written.Contains(page) && !new ReadOnlySpan<byte>(copy, (int)PageBytes).SequenceEqual(Source.Slice(page * PageBytes, (int)PageBytes)))
                {
                    return $"thread {thread} read page {page} unlike the source's";
                }

                if (random.Next(4) == 0)
                {
                    ulong marker = Marker(page);
                    Memcpy(at, (nint)(&marker), sizeof(ulong));
                    written.Add(page);
                }
            }

            return null;
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.Free(copy);
        }
    }

    /// <summary>libc's memcpy: the thread is in native code (preemptive for the runtime) while it waits on a missing page.</summary>
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "memcpy")]
    private static extern nint Memcpy(nint destination, nint source, nuint bytes);

    /// <summary>Every page equals the source's, but for the first word of those the guest wrote, which holds its marker.</summary>
    public string? Judge(HashSet<ulong> written)
    {
        for (ulong page = 0; page < Pages; page++)
        {
            Span<byte> here = Destination.Slice(page * PageBytes, (int)PageBytes);
            ReadOnlySpan<byte> there = Source.Slice(page * PageBytes, (int)PageBytes);
            if (written.Contains(page))
            {
                if (BitConverter.ToUInt64(here) != Marker(page) || !here[8..].SequenceEqual(there[8..]))
                {
                    return $"page {page}: the guest's write is lost, or the rest of the page is not the source's";
                }
            }
            else if (!here.SequenceEqual(there))
            {
                return $"page {page} is not the source's";
            }
        }

        return null;
    }

    public void Dispose()
    {
        _source.Dispose();
        _destination.Dispose();
    }

    private ulong Marker(ulong page) => (page * 0x9E37_79B9_7F4A_7C15UL) ^ (ulong)_seed;
}
