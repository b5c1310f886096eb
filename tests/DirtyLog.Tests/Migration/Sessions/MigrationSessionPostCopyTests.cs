// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Migration.PostCopy;
using DirtyLog.Migration.Sessions;
using DirtyLog.Migration.Transport;
using DirtyLog.Tests.Migration.PostCopy;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// Migrations that switch from pre-copy to post-copy, whole: the source's guest writes until the pause, pre-copy
/// cannot meet its downtime limit, and the destination's guest threads run from the resume, reading and writing
/// pages that may not be there yet. Judged page by page: every page the destination's guest did not write is the
/// source's as it stopped, and every one it wrote holds its write on the source's page.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class MigrationSessionPostCopyTests
{
    private const int GuestThreads = 2;

    [SetUp]
    public void NeedsUserfaultfd() => PostCopyRig.RequireUserfaultfd();

    [TestCase(1, 1)]
    [TestCase(2, 2)]
    [TestCase(4, 3)]
    public async Task PreCopyThatCannotConvergeSwitchesToPostCopyAndTheDestinationsGuestRunsOnEveryPage(int connections, int seed)
    {
        using var rig = MakeRig(connections, seed, PostCopyPolicy.WhenNotConverging);
        using var guest = new DestinationGuest(rig, seed);
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();
        guest.Join();

        string ends = $"source: {source.End} {source.Error}; destination: {destination.End} {destination.Error}";
        Assert.Multiple(() =>
        {
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), ends);
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), ends);
            Assert.That(source.Error, Is.Null, ends);
            Assert.That(destination.Error, Is.Null, ends);
            Assert.That(source.Decision?.Action, Is.EqualTo(PreCopyAction.PostCopy), source.Decision?.Reason);
            Assert.That(rig.Guest.IsRunning, Is.False, "the source's guest is stopped for good");
            Assert.That(guest.Failure, Is.Null, "every page the destination's guest read was the source's, or its own write");
            Assert.That(guest.Touches, Is.EqualTo(GuestThreads * DestinationGuest.TouchesPerThread));
            Assert.That(guest.Judge(), Is.Null);
            Assert.That(destination.PostCopy, Is.Not.Null);
            Assert.That(destination.PostCopy!.Complete, Is.True);
            Assert.That(destination.PostCopy.DiscardedPages, Is.GreaterThan(0UL), "the guest wrote pages after pre-copy sent them");
            Assert.That(destination.PostCopy.PagesRequested + destination.PostCopy.PagesPushed, Is.GreaterThanOrEqualTo(destination.PostCopy.DiscardedPages));
            Assert.That(source.PostCopy!.PagesRequested, Is.EqualTo(destination.PostCopy.PagesRequested), "every request was answered");
            Assert.That(source.PostCopy.PagesPushed, Is.EqualTo(destination.PostCopy.PagesPushed));
            Assert.That(source.PostCopy.DiscardedPages, Is.EqualTo(destination.PostCopy.DiscardedPages));
            Assert.That(source.DataConnections, Is.EqualTo(connections));
        });
    }

    [Test]
    public async Task TheVmmAsksForPostCopyDuringPreCopy()
    {
        using var rig = MakeRig(2, 7, PostCopyPolicy.OnRequest);
        rig.SourceOptions = rig.SourceOptions with { PreCopy = rig.SourceOptions.PreCopy with { MaxRounds = 30, DowntimeLimit = TimeSpan.Zero, StallRounds = 30 } };
        using var guest = new DestinationGuest(rig, 7);
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Phase == MigrationPhase.PreCopy && p.Round is { Number: >= 2 })
            {
                rig.Source!.SwitchToPostCopy();
            }
        });
        guest.Join();

        Assert.Multiple(() =>
        {
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), source.Error?.ToString());
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), destination.Error?.ToString());
            Assert.That(source.Decision?.Action, Is.EqualTo(PreCopyAction.PostCopy));
            Assert.That(source.Decision?.Reason, Does.Contain("the VMM asked for post-copy"));
            Assert.That(source.Rounds, Is.LessThan(30), "the request ended pre-copy");
            Assert.That(guest.Failure, Is.Null);
            Assert.That(guest.Judge(), Is.Null);
        });
    }

    [Test]
    public async Task ADestinationThatDoesNotAllowPostCopyGetsAStopCopy()
    {
        using var rig = MakeRig(2, 5, PostCopyPolicy.WhenNotConverging);
        rig.DestinationOptions = rig.DestinationOptions with { AllowPostCopy = false };
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), source.Error?.ToString());
            Assert.That(source.Decision?.Action, Is.EqualTo(PreCopyAction.StopCopy), source.Decision?.Reason);
            Assert.That(source.PostCopy, Is.Null);
            Assert.That(destination.PostCopy, Is.Null);
            Assert.That(destination.MemoryVerified, Is.True);
        });
    }

    /// <summary>
    /// Post-copy's connections cut at seeded points (before the n-th write of the source's on any of them, the
    /// recovered ones too), one to three times: each time both sides pause and carry on over new connections, and the
    /// end is judged page by page, with the destination's guest reading and writing throughout.
    /// </summary>
    [TestCase(2, 11)]
    [TestCase(1, 12)]
    [TestCase(2, 13)]
    [TestCase(4, 14)]
    [TestCase(2, 15)]
    [TestCase(1, 16)]
    [TestCase(2, 17)]
    [TestCase(3, 18)]
    public async Task PostCopyCutAtRandomPointsCarriesOnOverNewConnectionsAndLosesNothing(int connections, int seed)
    {
        using var rig = MakeRig(connections, seed, PostCopyPolicy.WhenNotConverging);
        rig.SourceOptions = rig.SourceOptions with { PostCopyRecoveryTimeout = TimeSpan.FromSeconds(20) };
        rig.DestinationOptions = rig.DestinationOptions with { PostCopyRecoveryTimeout = TimeSpan.FromSeconds(20) };
        var cuts = new SeededCuts(seed, () => rig.Source!.Progress.Phase);
        rig.DataConnectionFactories.CutBeforeWrite = (_, _) => cuts.CutNow();
        using var guest = new DestinationGuest(rig, seed);
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(cutBeforeWrite: (_, _) => cuts.CutNow());
        guest.Join();

        TestContext.Out.WriteLine($"{cuts.Made} cuts; destination {destination.PostCopy}; source {source.PostCopy}");
        string ends = $"after {cuts.Made} cuts: source: {source.End} {source.Error}; destination: {destination.End} {destination.Error}";
        Assert.Multiple(() =>
        {
            Assert.That(cuts.Made, Is.GreaterThan(0), "a cut happened in post-copy");
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), ends);
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), ends);
            Assert.That(destination.Error, Is.Null, ends);
            Assert.That(destination.PostCopy!.Complete, Is.True, ends);
            Assert.That(destination.PostCopy.Recoveries, Is.GreaterThan(0).And.LessThanOrEqualTo(cuts.Made), ends);
            Assert.That(rig.Guest.IsRunning, Is.False, "the guest never runs on both hosts");
            Assert.That(guest.Failure, Is.Null, "every page the destination's guest read was the source's, or its own write");
            Assert.That(guest.Touches, Is.EqualTo(GuestThreads * DestinationGuest.TouchesPerThread));
            Assert.That(guest.Judge(), Is.Null);
        });
    }

    /// <summary>
    /// Post-copy through the library's TCP factories (<see cref="TcpMigrationConnector"/> and
    /// <see cref="TcpMigrationListener"/>, every connection theirs, the control connection too), in the clear and over
    /// mutual TLS, across a link that breaks once in post-copy: both sides pause, the source connects again (TLS
    /// authenticated again), and the end is judged page by page with the destination's guest running throughout.
    /// </summary>
    [TestCase(false, 41)]
    [TestCase(true, 42)]
    [TestCase(true, 43)]
    public async Task PostCopyOverTcpAcrossALinkThatBreaksRecoversThroughTheTcpFactories(bool tls, int seed)
    {
        using var rig = MakeRig(2, seed, PostCopyPolicy.WhenNotConverging);
        using var pki = new DirtyLog.Tests.Migration.Transport.TestPki();
        using var listening = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        listening.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        listening.Listen(16);
        using var link = new DirtyLog.Tests.Migration.Transport.CuttingProxy((System.Net.IPEndPoint)listening.LocalEndPoint!);
        var listener = new TcpMigrationListener(listening, tls ? new MigrationTlsOptions { Certificate = pki.Destination, TrustedIssuers = [pki.Ca], AllowedSubjects = ["CN=source-1"] } : null);
        var connector = new TcpMigrationConnector("127.0.0.1", link.Port, tls ? new MigrationTlsOptions { Certificate = pki.Source, TrustedIssuers = [pki.Ca], ServerName = "destination.test" } : null);
        var refused = new List<string>();
        listener.Refused += (_, e) => refused.Add(e.Message);

        // One cut, at a seeded chunk of the source's in post-copy.
        MigrationSource? sourceSession = null;
        // Each connection's relay asks on its own thread: the one cut is claimed once, by whichever asks first past the chunk.
        int cutAt = new Random(seed).Next(0, 12), chunks = 0, claimed = 0;
        link.CutBeforeForward = () => sourceSession?.Progress.Phase == MigrationPhase.PostCopy
            && Interlocked.Increment(ref chunks) > cutAt
            && Interlocked.CompareExchange(ref claimed, 1, 0) == 0;

        using var guest = new DestinationGuest(rig, seed);
        Task<System.IO.Stream> accepted = listener.OpenAsync(CancellationToken.None).AsTask();
        await using System.IO.Stream sourceControl = await connector.OpenAsync(CancellationToken.None);
        await using System.IO.Stream destinationControl = await accepted;
        var destination = new MigrationDestination(rig.DestinationMemory, destinationControl, rig.DestinationHooks, rig.DestinationOptions with
        {
            ConnectionFactory = listener,
            PostCopyRecoveryTimeout = TimeSpan.FromSeconds(20),
        });
        sourceSession = new MigrationSource(rig.Harvester, rig.SourceMemory, sourceControl, rig.SourceHooks, rig.SourceOptions with
        {
            DataConnections = 2,
            ConnectionFactory = connector,
            PostCopyRecoveryTimeout = TimeSpan.FromSeconds(20),
        });
        rig.Guest.Resume();
        Task<MigrationOutcome> received = Task.Run(() => destination.RunAsync(null, CancellationToken.None));
        Task<MigrationOutcome> sent = Task.Run(() => sourceSession.RunAsync(null, CancellationToken.None));
        await Task.WhenAll(sent, received).WaitAsync(TimeSpan.FromSeconds(90));
        (MigrationOutcome source, MigrationOutcome destinationOutcome) = (await sent, await received);
        guest.Join();

        string ends = $"after {link.Cuts} cuts: source: {source.End} {source.Error}; destination: {destinationOutcome.End} {destinationOutcome.Error}";
        Assert.Multiple(() =>
        {
            Assert.That(link.Cuts, Is.EqualTo(1), "the link broke in post-copy");
            Assert.That(refused, Is.Empty, "every connection of the source's was authenticated, the recovered ones too");
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), ends);
            Assert.That(destinationOutcome.End, Is.EqualTo(MigrationEnd.RunningOnDestination), ends);
            Assert.That(destinationOutcome.PostCopy!.Complete, Is.True, ends);
            Assert.That(destinationOutcome.PostCopy.Recoveries, Is.EqualTo(1), ends);
            Assert.That(rig.Guest.IsRunning, Is.False, "the guest never runs on both hosts");
            Assert.That(guest.Failure, Is.Null, "every page the destination's guest read was the source's, or its own write");
            Assert.That(guest.Judge(), Is.Null);
        });
    }

    [Test]
    public async Task ConnectionsThatAreNotTheSourcesWhileRecoveringAreDroppedAndTheSourcesCarryOn()
    {
        using var rig = MakeRig(2, 21, PostCopyPolicy.WhenNotConverging);
        var cuts = new SeededCuts([0], () => rig.Source!.Progress.Phase);
        rig.DataConnectionFactories.CutBeforeWrite = (_, _) => cuts.CutNow();
        var strays = new List<System.IO.Stream>();
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Phase == MigrationPhase.PostCopyPaused && strays.Count == 0)
            {
                // Ahead of the source's new connections: one with another session's token, one that is not post-copy's at all.
                byte[] resume = new byte[PostCopyFormat.ResumeBytes];
                PostCopyFormat.WriteResume(resume, PostCopyFormat.ControlRole, 0, 99, 0x0BAD_0BAD, 2);
                foreach (byte[] first in (byte[][])[resume, [.. Enumerable.Repeat((byte)0x47, 64)]])
                {
                    System.IO.Stream stray = rig.DataConnectionFactories.QueueStrayAsync().GetAwaiter().GetResult();
                    stray.Write(first);
                    strays.Add(stray);
                }
            }
        });

        int[] closed = [.. strays.Select(stray => ReadsEnd(stray) ? 1 : 0)];
        Assert.Multiple(() =>
        {
            Assert.That(cuts.Made, Is.EqualTo(1));
            Assert.That(strays, Has.Count.EqualTo(2), "the strays came while post-copy was paused");
            Assert.That(closed, Is.EqualTo(new[] { 1, 1 }), "the destination dropped both");
            Assert.That(destination.Error, Is.Null, destination.Error?.ToString());
            Assert.That(source.Error, Is.Null, source.Error?.ToString());
            Assert.That(destination.PostCopy!.Complete, Is.True);
            Assert.That(destination.PostCopy.Recoveries, Is.EqualTo(1));
            Assert.That(rig.Judge(source, destination), Is.Null);
        });
    }

    [Test]
    public async Task PostCopyWhoseSourceCannotComeBackEndsCutOnBothSidesAfterTheirRecoveryTimeouts()
    {
        using var rig = MakeRig(1, 22, PostCopyPolicy.WhenNotConverging);
        rig.SourceOptions = rig.SourceOptions with { PostCopyRecoveryTimeout = TimeSpan.FromSeconds(1) };
        rig.DestinationOptions = rig.DestinationOptions with { PostCopyRecoveryTimeout = TimeSpan.FromSeconds(2) };
        var cuts = new SeededCuts([0], () => rig.Source!.Progress.Phase);
        rig.DataConnectionFactories.CutBeforeWrite = (_, _) => cuts.CutNow();
        var paused = new List<MigrationPhase>();
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync(onSourceProgress: p =>
        {
            if (p.Phase == MigrationPhase.PostCopyPaused)
            {
                rig.DataConnectionFactories.Unreachable = true;
                paused.Add(p.Phase);
            }
        });

        Assert.Multiple(() =>
        {
            Assert.That(paused, Is.Not.Empty, "the source paused post-copy");
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), "the guest runs there, whatever the cut");
            Assert.That(source.Error?.Phase, Is.EqualTo(MigrationPhase.PostCopy));
            Assert.That(source.Error?.Message, Does.Contain("did not carry on within 1 s").And.Contain("unreachable"));
            Assert.That(source.PostCopy!.Complete, Is.False);
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination));
            Assert.That(destination.Error?.Message, Does.Contain("the source did not come back within 2 s"));
            Assert.That(destination.PostCopy!.Complete, Is.False);
            Assert.That(destination.PostCopy.Recoveries, Is.Zero);
            Assert.That(rig.Guest.IsRunning, Is.False, "the source never resumes a guest that runs at the destination");
        });
    }

    /// <summary>Whether the peer closed the stream (a read ends or fails).</summary>
    private static bool ReadsEnd(System.IO.Stream stream)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            return stream.ReadAsync(new byte[16], timeout.Token).AsTask().GetAwaiter().GetResult() == 0;
        }
        catch (System.IO.IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false; // still open: the destination kept it
        }
    }

    /// <summary>
    /// The push held on its way (the destination reads none of it) from the resume until the destination's guest made
    /// every touch: each page it touched came by request, many of them while their push was in flight, and those
    /// pushes, arriving after, must leave the guest's own writes in place.
    /// </summary>
    [TestCase(2, 31)]
    [TestCase(1, 32)]
    public async Task AFaultOnAPageWhosePushIsInFlightIsAnsweredAndThePushArrivingAfterChangesNothing(int connections, int seed)
    {
        using var rig = MakeRig(connections, seed, PostCopyPolicy.WhenNotConverging);
        rig.DestinationHooks.BeforeResume = rig.DataConnectionFactories.HoldDestinationReads;
        using var guest = new DestinationGuest(rig, seed);
        _ = guest.Done.ContinueWith(_ => rig.DataConnectionFactories.ReleaseDestinationReads(), TaskScheduler.Default);
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();
        guest.Join();

        TestContext.Out.WriteLine($"destination {destination.PostCopy}, {destination.PostCopy?.PagesArrivedTwice} arrived twice");
        Assert.Multiple(() =>
        {
            Assert.That(destination.Error, Is.Null, destination.Error?.ToString());
            Assert.That(source.Error, Is.Null, source.Error?.ToString());
            Assert.That(destination.PostCopy!.Complete, Is.True);
            Assert.That(destination.PostCopy.PagesRequested, Is.GreaterThan(0UL), "the guest's touches were requested");
            Assert.That(destination.PostCopy.PagesArrivedTwice, Is.GreaterThan(0UL), "pages requested while their push was in flight arrived again");
            Assert.That(guest.Failure, Is.Null);
            Assert.That(guest.Judge(), Is.Null, "a push that arrived after the guest wrote its page did not overwrite the write");
        });
    }

    [Test]
    public void PostCopyWithoutADataConnectionIsRefusedAtOnce()
    {
        Assert.Multiple(() =>
        {
            Assert.That(() => new MigrationSourceOptions { PostCopy = PostCopyPolicy.WhenNotConverging }.Validate(),
                Throws.ArgumentException.With.Message.Contains("DataConnections"));
            Assert.That(() => new MigrationDestinationOptions { AllowPostCopy = true }.Validate(),
                Throws.ArgumentException.With.Message.Contains("ConnectionFactory"));
        });
    }

    /// <summary>A rig whose pre-copy never meets its downtime limit (0) and spends its budget in 3 rounds.</summary>
    private static SessionRig MakeRig(int connections, int seed, PostCopyPolicy policy)
    {
        var rig = new SessionRig(sourceBytes: 16 * SessionRig.MiB, seed: seed) { DataConnections = connections };
        rig.SourceOptions = rig.SourceOptions with
        {
            PreCopy = new PreCopyOptions { DowntimeLimit = TimeSpan.Zero, MaxRounds = 3 },
            PostCopy = policy,
        };
        rig.DestinationOptions = rig.DestinationOptions with { AllowPostCopy = true };
        return rig;
    }

    /// <summary>
    /// The destination's guest: threads started by the resume hook that read pages and write a word into some,
    /// through native copies only (as vCPUs touch memory inside <c>KVM_RUN</c>; see <c>PostCopyMemory</c>).
    /// </summary>
    private sealed class DestinationGuest : IDisposable
    {
        public const int TouchesPerThread = 1500;

        private readonly SessionRig _rig;
        private readonly int _seed;
        private readonly List<Thread> _threads = [];
        private readonly HashSet<ulong>[] _written = [.. Enumerable.Range(0, GuestThreads).Select(_ => new HashSet<ulong>())];
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private string? _failure;
        private int _touches;
        private int _running = GuestThreads;

        public DestinationGuest(SessionRig rig, int seed)
        {
            _rig = rig;
            _seed = seed;
            rig.DestinationHooks.AfterResume = Start;
        }

        public string? Failure => Volatile.Read(ref _failure);

        public int Touches => Volatile.Read(ref _touches);

        /// <summary>Completes once every thread of the guest here made all its touches.</summary>
        public Task Done => _done.Task;

        /// <summary>Waits for the guest's threads; after a failed post-copy one may wait on a missing page for ever (it is a background thread).</summary>
        public void Join()
        {
            foreach (Thread thread in _threads)
            {
                if (!thread.Join(TimeSpan.FromSeconds(30)))
                {
                    Interlocked.CompareExchange(ref _failure, $"{thread.Name} still waits on a missing page", null);
                }
            }

            _threads.Clear();
        }

        /// <summary>Every page the guest here wrote holds its marker on the source's page; every other page is the source's.</summary>
        public string? Judge()
        {
            GuestMemoryView source = _rig.SourceMemory, here = _rig.DestinationMemory;
            for (ulong page = 0; page < source.Size / 4096; page++)
            {
                Span<byte> mine = here.Slice(page * 4096, 4096);
                ReadOnlySpan<byte> theirs = source.Slice(page * 4096, 4096);
                if (_written[(int)(page % GuestThreads)].Contains(page))
                {
                    if (BitConverter.ToUInt64(mine) != Marker(page) || !mine[8..].SequenceEqual(theirs[8..]))
                    {
                        return $"page {page}: the destination guest's write is lost, or the rest is not the source's";
                    }
                }
                else if (!mine.SequenceEqual(theirs))
                {
                    return $"page {page} is not the source's";
                }
            }

            return null;
        }

        public void Dispose() => Join();

        private void Start()
        {
            for (int t = 0; t < GuestThreads; t++)
            {
                int thread = t;
                var worker = new Thread(() => Run(thread)) { IsBackground = true, Name = $"destination guest {thread}" };
                _threads.Add(worker);
                worker.Start();
            }
        }

        private unsafe void Run(int thread)
        {
            GuestMemoryView source = _rig.SourceMemory, here = _rig.DestinationMemory;
            ulong pages = source.Size / 4096;
            var random = new Random(_seed * 131 + thread);
            byte* copy = (byte*)NativeMemory.Alloc(4096);
            try
            {
                for (int i = 0; i < TouchesPerThread; i++)
                {
                    ulong page = (ulong)random.NextInt64((long)(pages / GuestThreads)) * GuestThreads + (ulong)thread; // its own pages
                    nint at = here.Address + (nint)(page * 4096);
                    Memcpy((nint)copy, at, 4096); // a missing page waits here, in native code
                    if (!_written[thread].Contains(page) && !new ReadOnlySpan<byte>(copy, 4096).SequenceEqual(source.Slice(page * 4096, 4096)))
                    {
                        Interlocked.CompareExchange(ref _failure, $"thread {thread} read page {page} unlike the source's", null);
                    }

                    if (random.Next(3) == 0)
                    {
                        ulong marker = Marker(page);
                        Memcpy(at, (nint)(&marker), sizeof(ulong));
                        _written[thread].Add(page);
                    }

                    Interlocked.Increment(ref _touches);
                }
            }
            finally
            {
                NativeMemory.Free(copy);
                if (Interlocked.Decrement(ref _running) == 0)
                {
                    _done.TrySetResult();
                }
            }
        }

        private ulong Marker(ulong page) => (page * 0x9E37_79B9_7F4A_7C15UL) ^ (ulong)_seed ^ 0x5A5A;

        [DllImport("libc", EntryPoint = "memcpy")]
        private static extern nint Memcpy(nint destination, nint source, nuint bytes);
    }

    /// <summary>
    /// Where the cuts fall: before the n-th write of the source's in post-copy (its pause included), n drawn from the
    /// seed, each a few writes after the one before; up to three.
    /// </summary>
    private sealed class SeededCuts
    {
        private readonly Func<MigrationPhase> _phase;
        private readonly Queue<int> _at = new();
        private readonly Lock _gate = new();
        private int _writes;

        /// <summary>Cuts before each of the writes given, counted from the first in post-copy.</summary>
        public SeededCuts(int[] at, Func<MigrationPhase> phase)
        {
            _phase = phase;
            foreach (int write in at)
            {
                _at.Enqueue(write);
            }
        }

        public SeededCuts(int seed, Func<MigrationPhase> phase)
        {
            _phase = phase;
            var random = new Random(seed);
            int at = random.Next(0, 4);
            for (int i = 0, cuts = random.Next(1, 4); i < cuts; i++, at += random.Next(1, 12))
            {
                _at.Enqueue(at);
            }
        }

        public int Made { get; private set; }

        public bool CutNow()
        {
            if (_phase() is not (MigrationPhase.PostCopy or MigrationPhase.PostCopyPaused))
            {
                return false;
            }

            lock (_gate)
            {
                if (_at.Count == 0 || _writes++ != _at.Peek())
                {
                    return false;
                }

                _at.Dequeue();
                Made++;
                return true;
            }
        }
    }
}
