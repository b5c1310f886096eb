// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.IO.Pipelines;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// Live migration of a running guest with DirtyLog. With no arguments: source and destination in this process over
/// a loopback TCP connection, and a byte-for-byte check of the destination's memory at the end.
/// </summary>
internal static class Program
{
    internal static Task<int> Main(string[] args) => SampleCommandLine.RunAsync(args);

    /// <summary>The whole migration in this process; 0 when the destination's memory equals the source's.</summary>
    internal static async Task<int> RunInProcessAsync(MigrationOptions options) =>
        (await MigrateInProcessAsync(options).ConfigureAwait(false)).Identical ? 0 : 1;

    /// <summary>The whole migration in this process, and what happened.</summary>
    internal static async Task<(bool Identical, int TrackerFaults)> MigrateInProcessAsync(MigrationOptions options)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var vm = new SourceVm(options);
        using var destination = new DestinationVm(options, vm.UsesKvm);
        Console.WriteLine(vm.UsesKvm
            ? $"source: a KVM guest ({options.GuestBytes >> 20} MiB, its boot sector incrementing {vm.Guest!.Pages:N0} pages pass after pass) + {options.DeviceBytes >> 20} MiB device memory, 2 DMA devices, 1 in-VMM device"
            : $"source: SIMULATED vCPU threads (no /dev/kvm here) over {options.GuestBytes >> 20} MiB + {options.DeviceBytes >> 20} MiB, 2 DMA devices, 1 in-VMM device");
        Console.WriteLine($"destination: 127.0.0.1:{port}; writers dirty {options.PagesPerSecond:N0} pages/s each");

        Task<PageStreamSummary> receive = ReceiveAsync(listener, destination.Memory, atEnd => destination.Resume(atEnd, vm.Guest));
        using var client = new TcpClient { NoDelay = true }; // small records (a round's end, the end) go at once, not after a delayed ACK
        await client.ConnectAsync(IPAddress.Loopback, port).ConfigureAwait(false);
        vm.Start();
        await Task.Delay(options.Warmup).ConfigureAwait(false); // the scenario's pacing: the guest settles before the migration starts
        using MigrationSnapshotChain? snapshots = options.SnapshotDirectory is { } dir && vm.UsesKvm
            ? await MigrationSnapshotChain.BeginAsync(vm, dir).ConfigureAwait(false)
            : null;
        if (options.SnapshotDirectory is not null && snapshots is null)
        {
            Console.WriteLine("snapshots: skipped, they need the KVM guest (its vCPU pauses for the base)");
        }

        long startedAt = Stopwatch.GetTimestamp();
        MigrationOutcome outcome = await Migrator.SendAsync(vm, client.GetStream(), options, MigrationReport.Progress, CancellationToken.None, snapshots?.Consumers).ConfigureAwait(false);
        (List<RoundRow> rows, PreCopyDecision decision) = (outcome.Rounds, outcome.Decision);
        if (decision.Action == PreCopyAction.Abort)
        {
            Console.WriteLine($"migration aborted: {decision.Reason}; the guest keeps running on the source");
            return (false, rows.Sum(r => r.Faults));
        }

        PageStreamSummary summary = await receive.ConfigureAwait(false);
        bool resumed = destination.ResumedAt != 0;
        TimeSpan downtime = resumed ? Stopwatch.GetElapsedTime(outcome.PausedAt, destination.ResumedAt) : outcome.Downtime;
        MigrationReport.Summary(rows, decision, summary, downtime, resumed, options);
        if (!resumed)
        {
            // No vCPU to resume (no /dev/kvm): the destination's memory stays as the stream left it.
            bool equal = vm.Memory.Slice(0, (int)vm.Memory.Size).SequenceEqual(destination.Memory.Slice(0, (int)vm.Memory.Size));
            Console.WriteLine(equal
                ? $"verdict: destination memory equals the source's, byte for byte ({vm.Memory.Size:N0} bytes)"
                : "verdict: MISMATCH: the destination's memory differs from the source's");
            return (equal && summary.MemoryVerified, rows.Sum(r => r.Faults));
        }

        // The guest runs on the destination: let it make passes there, stop it, and check it.
        long passes = destination.RunThenPause(2, TimeSpan.FromSeconds(10));
        string? broken = vm.Guest!.CheckInvariant(destination.Memory);
        // The paused source's memory is what the destination resumed from (the digest proves it): progress is the change since.
        ulong progressed = vm.Guest.PagesChangedSince(vm.Guest.FirstBytes(vm.Memory), destination.Memory);
        bool ok = summary.MemoryVerified && broken is null && progressed > 0;
        if (snapshots is not null)
        {
            ok &= await snapshots.FinishAsync(vm, options).ConfigureAwait(false);
        }

        Console.WriteLine(FormattableString.Invariant(
            $"result: total_ms={Stopwatch.GetElapsedTime(startedAt, destination.ResumedAt).TotalMilliseconds:F1} downtime_ms={downtime.TotalMilliseconds:F1} mb={summary.Bytes / 1e6:F1} rounds={summary.Rounds} invariant={(broken is null ? "ok" : "broken")} digest={(summary.MemoryVerified ? "ok" : "mismatch")}{(vm.RingStatus is { } ring ? $" ring_overflows={ring.Overflows} ring_wedged={(ring.Wedged ? "yes" : "no")}" : "")}"));
        Console.WriteLine($"destination: the guest resumed and ran {passes} passes, {progressed:N0} of its {vm.Guest.Pages:N0} pages changed");
        Console.WriteLine(ok
            ? $"verdict: the guest runs on the destination with its invariant intact; every page matched the source's digest ({vm.Memory.Size:N0} bytes)"
            : $"verdict: FAILED: {broken ?? (summary.MemoryVerified ? "the guest made no progress on the destination" : "the memory digest did not match")}");
        return (ok, rows.Sum(r => r.Faults));
    }

    /// <summary>
    /// The destination: applies the stream, acknowledging each round back over the same connection; at the end record
    /// the guest could resume here; then it checks the source's memory digest, which comes after the switch-over. It
    /// runs on a thread of its own with blocking receives (see <see cref="SynchronousStream"/>): the end record's
    /// arrival wakes it directly, not through the thread pool, and that wake-up is part of the downtime.
    /// </summary>
    private static Task<PageStreamSummary> ReceiveAsync(TcpListener listener, GuestMemoryView memory, Func<PageStreamSummary, bool>? resume = null) =>
        Task.Factory.StartNew(() => Receive(listener, memory, resume), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static PageStreamSummary Receive(TcpListener listener, GuestMemoryView memory, Func<PageStreamSummary, bool>? resume)
    {
        using Socket connection = listener.AcceptSocket(); // accepted synchronously: its receives stay blocking
        connection.NoDelay = true; // acknowledgements are small: Nagle would hold them for the source's delayed ACK (40 ms)
        using var stream = new SynchronousStream(new NetworkStream(connection, ownsSocket: false));
        PipeWriter acks = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));

        // The destination's RAM is a fresh mapping: zero pages need no touching where the stream wrote nothing.
        var reader = new PageStreamReader(PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true)), memory)
        {
            Acknowledgements = acks,
            MemoryStartsZeroed = true,
            DeferEndAcknowledgement = true, // acknowledged once the guest runs here: the source's downtime covers the resume
        };

        // Every read and write completes before it returns: these waits never block on anything but the socket.
        PageStreamSummary atEnd = reader.ReadToEndAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        resume?.Invoke(atEnd); // the guest runs here from now on: the downtime ends
        reader.AcknowledgeEndAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        PageStreamSummary summary = reader.VerifyMemoryDigestAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        acks.Complete();
        return summary;
    }

    internal static async Task<int> ListenAsync(int port, MigrationOptions options)
    {
        using var listener = new TcpListener(IPAddress.Any, port);
        listener.Start();
        bool kvm = !options.NoKvm && File.Exists("/dev/kvm");
        using var destination = new DestinationVm(options, kvm);
        BootGuest? guest = kvm ? SourceVm.GuestFor(options, tscKhz: 0) : null; // the same working set as the source's (pacing is the source's)
        Console.WriteLine($"destination: waiting on port {port} for up to {destination.Memory.Size >> 20} MiB of guest memory{(kvm ? ", to resume its vCPU here" : "")}");
        try
        {
            PageStreamSummary summary = await ReceiveAsync(listener, destination.Memory, atEnd => destination.Resume(atEnd, guest)).ConfigureAwait(false);
            Console.WriteLine($"destination: complete: {summary.Rounds} rounds, {summary.DataPages:N0} pages with data, {summary.ZeroPages:N0} zero pages, every record checksummed");
            if (destination.ResumedAt == 0 || guest is null)
            {
                Console.WriteLine(summary.MemoryVerified
                    ? $"verdict: destination memory matches the source's memory digest (CRC-32C of every page); state received: {string.Join(", ", summary.States.Keys)}"
                    : "verdict: the source sent no memory digest; the stream itself was complete and intact");
                return summary.MemoryVerified ? 0 : 1;
            }

            long passes = destination.RunThenPause(2, TimeSpan.FromSeconds(10));
            string? broken = guest.CheckInvariant(destination.Memory);
            bool ok = summary.MemoryVerified && broken is null && passes > 0;
            Console.WriteLine(ok
                ? $"verdict: the guest runs here with its invariant intact ({passes} passes); every page matched the source's digest"
                : $"verdict: FAILED: {broken ?? (summary.MemoryVerified ? "the guest completed no pass here" : "the memory digest did not match")}");
            return ok ? 0 : 1;
        }
        catch (Exception e) when (e is PageStreamException or IOException or SocketException)
        {
            Console.Error.WriteLine($"destination: migration incomplete: {e.Message}");
            return 1;
        }
    }

    internal static async Task<int> SendAsync(string host, int port, MigrationOptions options)
    {
        using var vm = new SourceVm(options);
        using var client = new TcpClient { NoDelay = true }; // small records (a round's end, the end) go at once, not after a delayed ACK
        try
        {
            await client.ConnectAsync(host, port).ConfigureAwait(false);
            vm.Start();
            MigrationOutcome outcome = await Migrator.SendAsync(vm, client.GetStream(), options, MigrationReport.Progress, CancellationToken.None).ConfigureAwait(false);
            if (outcome.Decision.Action == PreCopyAction.Abort)
            {
                Console.WriteLine($"migration aborted: {outcome.Decision.Reason}; the guest keeps running here");
                return 1;
            }

            // The same summary as in one process; the stream's own (pages applied, digest) is the destination's.
            MigrationReport.Summary(outcome.Rounds, outcome.Decision, null, outcome.Downtime, resumed: false, options);
            return 0;
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
        {
            Console.Error.WriteLine($"source: the connection dropped ({e.Message}); the guest keeps running here");
            return 1;
        }
    }

    /// <summary>The guest's boot sector with these options' parameters, as a 1 MiB raw disk image: the same guest for another VMM.</summary>
    internal static int WriteBootSector(string path, MigrationOptions options)
    {
        uint tscKhz;
        using (var probe = new SampleVmm(1UL << 20))
        {
            tscKhz = probe.TscKhz;
        }

        byte[] image = new byte[1 << 20];
        SourceVm.GuestFor(options, tscKhz).Sector().CopyTo(image, 0);
        File.WriteAllBytes(path, image);
        Console.WriteLine($"boot sector for {options.GuestBytes >> 20} MiB, TSC {tscKhz} kHz, {options.PagesPerSecond} pages/s: {path}");
        return 0;
    }
}
