// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;
using DirtyLog.Migration.Transport;
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

        (MigrationTlsOptions Source, MigrationTlsOptions Destination)? tls = options.TlsDirectory is { } certificates ? TestCertificates.Load(certificates) : null;
        Task<MigrationOutcome> receive = ReceiveAsync(listener, destination, vm.Guest, options, tls?.Destination);
        using var client = new TcpClient { NoDelay = true }; // small records (a round's end, the end) go at once, not after a delayed ACK
        await client.ConnectAsync(IPAddress.Loopback, port).ConfigureAwait(false);
        Stream connection = client.GetStream();
        if (tls is { Source: var sourceTls })
        {
            connection = await MigrationTls.ConnectAsync(connection, sourceTls).ConfigureAwait(false);
            Console.WriteLine($"transport: mutual TLS 1.3 on every connection ({options.Connections} data connections)");
        }

        vm.Start();
        // The scenario's pacing: the guest settles before the migration starts. Its pace alone is measured over the
        // second half (the first faults its memory in), to judge its progress during the migration against.
        await Task.Delay(options.Warmup / 2).ConfigureAwait(false);
        (long passes, long at) paceFrom = (vm.Passes, Stopwatch.GetTimestamp());
        await Task.Delay(options.Warmup - (options.Warmup / 2)).ConfigureAwait(false);
        double paceBefore = options.Warmup > TimeSpan.Zero ? (vm.Passes - paceFrom.passes) / Stopwatch.GetElapsedTime(paceFrom.at).TotalSeconds : 0;
        using MigrationSnapshotChain? snapshots = options.SnapshotDirectory is { } dir && vm.UsesKvm
            ? await MigrationSnapshotChain.BeginAsync(vm, dir).ConfigureAwait(false)
            : null;
        if (options.SnapshotDirectory is not null && snapshots is null)
        {
            Console.WriteLine("snapshots: skipped, they need the KVM guest (its vCPU pauses for the base)");
        }

        long startedAt = Stopwatch.GetTimestamp();
        long passesAtStart = vm.Passes;
        (MigrationOutcome outcome, List<RoundRow> rows, long pausedAt) = await Migrator.SendAsync(vm, connection, options, MigrationReport.Progress, CancellationToken.None, snapshots?.Consumers,
            options.Connections > 0 ? new TcpMigrationConnector("127.0.0.1", port, tls?.Source) : null).ConfigureAwait(false);
        if (connection is SslStream secure)
        {
            await secure.DisposeAsync().ConfigureAwait(false); // its TLS close first, then the connection's
        }

        client.Close(); // the session is over: the destination reads the end of the connection
        MigrationOutcome received = await receive.ConfigureAwait(false);
        // The migration's window, start to every page at the destination (after post-copy, later than the resume),
        // and the guest's passes in it on either host: the source's to its pause, the destination's since its resume.
        TimeSpan window = Stopwatch.GetElapsedTime(startedAt);
        long passesInWindow = vm.Passes - passesAtStart + destination.Passes;
        int faults = rows.Sum(r => r.Faults);
        if (outcome.End != MigrationEnd.RunningOnDestination)
        {
            Console.WriteLine(outcome.End == MigrationEnd.RunningOnSource
                ? $"migration failed: {outcome.Error?.Message}; the guest keeps running on the source"
                : $"migration outcome unknown: {outcome.Error?.Message}");
            return (false, faults);
        }

        bool resumed = destination.ResumedAt != 0;
        TimeSpan downtime = resumed ? Stopwatch.GetElapsedTime(pausedAt, destination.ResumedAt) : outcome.Downtime;
        MigrationReport.Summary(rows, outcome.Decision!, received, downtime, resumed, options);
        if (received.PostCopy is { } postCopy)
        {
            Console.WriteLine(FormattableString.Invariant($"{postCopy}"));
        }

        if (!resumed)
        {
            // No vCPU to resume (no /dev/kvm): the destination's memory stays as the stream (and post-copy) left it.
            bool equal = vm.Memory.Slice(0, (int)vm.Memory.Size).SequenceEqual(destination.Memory.Slice(0, (int)vm.Memory.Size));
            Console.WriteLine(equal
                ? $"verdict: destination memory equals the source's, byte for byte ({vm.Memory.Size:N0} bytes)"
                : "verdict: MISMATCH: the destination's memory differs from the source's");
            return (equal && Verified(received), faults);
        }

        // The guest runs on the destination: let it make passes there, stop it, and check it.
        long passes = destination.RunThenPause(2, TimeSpan.FromSeconds(10));
        string? broken = vm.Guest!.CheckInvariant(destination.Memory);
        // The paused source's memory is what the destination resumed from (the digest proves it): progress is the change since.
        ulong progressed = vm.Guest.PagesChangedSince(vm.Guest.FirstBytes(vm.Memory), destination.Memory);
        bool ok = Verified(received) && broken is null && progressed > 0;
        if (snapshots is not null)
        {
            ok &= await snapshots.FinishAsync(vm, options).ConfigureAwait(false);
        }

        Console.WriteLine(FormattableString.Invariant(
            $"result: total_ms={Stopwatch.GetElapsedTime(startedAt, destination.ResumedAt).TotalMilliseconds:F1} complete_ms={window.TotalMilliseconds:F1} downtime_ms={downtime.TotalMilliseconds:F1} mb={received.Bytes / 1e6:F1} rounds={received.Rounds} connections={received.DataConnections} pace_before={paceBefore:F1} pace={(paceBefore > 0 ? passesInWindow / window.TotalSeconds / paceBefore : 0):F2} throttle={vm.Throttle:F2} invariant={(broken is null ? "ok" : "broken")} digest={(received.MemoryVerified ? "ok" : received.PostCopy is { Complete: true } ? "postcopy" : "mismatch")}{(vm.RingStatus is { } ring ? $" ring_overflows={ring.Overflows} ring_resyncs={ring.Resynchronizations} ring_wedged={(ring.Wedged ? "yes" : "no")}" : "")}"));
        Console.WriteLine($"destination: the guest resumed and ran {passes} passes, {progressed:N0} of its {vm.Guest.Pages:N0} pages changed");
        Console.WriteLine(ok
            ? $"verdict: the guest runs on the destination with its invariant intact; {MemoryCheck(received)} ({vm.Memory.Size:N0} bytes)"
            : $"verdict: FAILED: {broken ?? (Verified(received) ? "the guest made no progress on the destination" : NotVerified(received))}");
        return (ok, faults);
    }

    /// <summary>
    /// The destination: a session over the accepted connection, on a thread of its own with blocking receives (see
    /// <see cref="SynchronousStream"/>): the end record's arrival wakes it directly, not through the thread pool, and
    /// that wake-up is part of the downtime.
    /// </summary>
    private static Task<MigrationOutcome> ReceiveAsync(TcpListener listener, DestinationVm destination, BootGuest? guest, MigrationOptions options, MigrationTlsOptions? tls = null) =>
        Task.Factory.StartNew(() =>
        {
            // The data connections come to the same port, each authenticated as the control connection.
            TcpMigrationListener? data = null;
            if (options.Connections > 0)
            {
                data = new TcpMigrationListener(listener.Server, tls, insecure: options.Insecure);
                data.Refused += (peer, refused) => Console.Error.WriteLine($"destination: refused a data connection from {peer} ({refused.Refusal}): {refused.Message}");
            }

            while (true)
            {
                using Socket connection = listener.AcceptSocket(); // accepted synchronously: its receives stay blocking
                connection.NoDelay = true; // acknowledgements are small: Nagle would hold them for the source's delayed ACK (40 ms)
                using var stream = new SynchronousStream(new NetworkStream(connection, ownsSocket: false));
                if (tls is null)
                {
                    return Migrator.Receive(destination, guest, stream, data, options.Connections, options.PostCopy);
                }

                SslStream secure;
                connection.ReceiveTimeout = (int)tls.HandshakeTimeout.TotalMilliseconds; // blocking reads ignore the cancellation: a silent peer is dropped
                try
                {
                    secure = MigrationTls.AcceptAsync(stream, tls).GetAwaiter().GetResult();
                    connection.ReceiveTimeout = 0; // authenticated: the migration's own rules from here
                }
                catch (MigrationTransportException refused)
                {
                    // Nothing of the guest came from it: keep waiting for an authorized source.
                    Console.Error.WriteLine($"destination: refused {connection.RemoteEndPoint} ({refused.Refusal}): {refused.Message}");
                    continue;
                }

                using (secure)
                {
                    return Migrator.Receive(destination, guest, secure, data, options.Connections, options.PostCopy);
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>The TLS options of this side, from the sample's files; <see langword="null"/> for a plain connection.</summary>
    private static MigrationTlsOptions? TlsOf(MigrationOptions options, string? host)
    {
        if (!options.UsesTls)
        {
            return null;
        }

        MigrationTlsOptions tls = MigrationTlsOptions.FromPemFiles(options.TlsCertificateFile!, options.TlsKeyFile!, options.TlsCaFile!);
        return tls with { AllowedSubjects = options.TlsAllow, ServerName = options.TlsServerName ?? host };
    }

    internal static async Task<int> ListenAsync(int port, MigrationOptions options)
    {
        using var listener = new TcpListener(IPAddress.Any, port);
        listener.Start();
        bool kvm = !options.NoKvm && File.Exists("/dev/kvm");
        using var destination = new DestinationVm(options, kvm);
        BootGuest? guest = kvm ? SourceVm.GuestFor(options, tscKhz: 0) : null; // the same working set as the source's (pacing is the source's)
        Console.WriteLine($"destination: waiting on port {port} for up to {destination.Memory.Size >> 20} MiB of guest memory{(kvm ? ", to resume its vCPU here" : "")}");
        MigrationTlsOptions? tls = TlsOf(options, null);
        Console.WriteLine(tls is null
            ? "destination: INSECURE: no TLS (--insecure): anyone who reaches this port can write a guest here"
            : $"destination: mutual TLS 1.3, allowing {string.Join(", ", options.TlsAllow)}");
        MigrationOutcome received = await ReceiveAsync(listener, destination, guest, options, tls).ConfigureAwait(false);
        if (received.End != MigrationEnd.RunningOnDestination)
        {
            Console.Error.WriteLine($"destination: migration refused or incomplete, nothing resumed here: {received.Error?.Message}");
            return 1;
        }

        Console.WriteLine($"destination: complete: {received.Rounds} rounds, {received.Pages:N0} pages with data, {received.ZeroPages:N0} zero pages, every record checksummed"
            + (received.DataConnections > 0 ? $", over {received.DataConnections} data connections" : ""));
        if (received.PostCopy is { } postCopy)
        {
            Console.WriteLine(FormattableString.Invariant($"destination: {postCopy}"));
        }
        if (destination.ResumedAt == 0 || guest is null)
        {
            Console.WriteLine(received.MemoryVerified
                ? $"verdict: destination memory matches the source's memory digest (CRC-32C of every page); state received: {string.Join(", ", received.StateSections)}"
                : received.PostCopy is { Complete: true }
                    ? $"verdict: every page arrived by post-copy, each record checksummed (no digest: the guest may run here before the last page); state received: {string.Join(", ", received.StateSections)}"
                    : $"verdict: the memory was not verified: {received.Error?.Message}");
            return Verified(received) ? 0 : 1;
        }

        long passes = destination.RunThenPause(2, TimeSpan.FromSeconds(10));
        string? broken = guest.CheckInvariant(destination.Memory);
        bool ok = Verified(received) && broken is null && passes > 0;
        Console.WriteLine(ok
            ? $"verdict: the guest runs here with its invariant intact ({passes} passes); {MemoryCheck(received)}"
            : $"verdict: FAILED: {broken ?? (Verified(received) ? "the guest completed no pass here" : NotVerified(received))}");
        return ok ? 0 : 1;
    }

    internal static async Task<int> SendAsync(string host, int port, MigrationOptions options)
    {
        using var vm = new SourceVm(options);
        using var client = new TcpClient { NoDelay = true }; // small records (a round's end, the end) go at once, not after a delayed ACK
        try
        {
            await client.ConnectAsync(host, port).ConfigureAwait(false);
            Stream connection = client.GetStream();
            SslStream? secure = null;
            MigrationTlsOptions? tls = TlsOf(options, host);
            if (tls is not null)
            {
                try
                {
                    connection = secure = await MigrationTls.ConnectAsync(connection, tls).ConfigureAwait(false);
                }
                catch (MigrationTransportException refused)
                {
                    Console.Error.WriteLine($"source: the TLS handshake failed ({refused.Refusal}): {refused.Message}; the guest keeps running here");
                    return 1;
                }
            }

            vm.Start();
            (MigrationOutcome outcome, List<RoundRow> rows, _) = await Migrator.SendAsync(vm, connection, options, MigrationReport.Progress, CancellationToken.None,
                dataConnections: options.Connections > 0 ? new TcpMigrationConnector(host, port, tls) : null).ConfigureAwait(false);
            secure?.Dispose();
            switch (outcome.End)
            {
                case MigrationEnd.RunningOnSource:
                    Console.Error.WriteLine($"source: migration failed: {outcome.Error?.Message}; the guest keeps running here");
                    return 1;
                case MigrationEnd.Unknown:
                    Console.Error.WriteLine($"source: {outcome.Error?.Message}; ask the destination whether the guest runs there before resuming it here");
                    return 2;
            }

            // The same summary as in one process; the stream's own (pages applied, digest) is the destination's.
            MigrationReport.Summary(rows, outcome.Decision!, null, outcome.Downtime, resumed: false, options);
            if (outcome.PostCopy is { } postCopy)
            {
                Console.WriteLine($"source: post-copy: {postCopy.PagesRequested:N0} pages answered, {postCopy.PagesPushed:N0} pushed in {postCopy.Duration.TotalMilliseconds:F0} ms");
            }
            Console.WriteLine(outcome.DataConnections > 0
                ? $"source: the pages went over {outcome.DataConnections} data connections{(tls is null ? "" : ", every one mutual TLS")}; the guest runs on the destination"
                : $"source: the pages went over the control connection{(tls is null ? "" : " (mutual TLS)")}; the guest runs on the destination");
            return 0;
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            Console.Error.WriteLine($"source: could not reach the destination ({e.Message}); the guest keeps running here");
            return 1;
        }
    }

    private static uint HostCpuKhz()
    {
        string? line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("cpu MHz", StringComparison.Ordinal));
        return line is not null && double.TryParse(line[(line.IndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture, out double mhz) ? (uint)(mhz * 1000) : 2_000_000;
    }

    /// <summary>The guest's boot sector with these options' parameters, as a 1 MiB raw disk image: the same guest for another VMM.</summary>
    internal static int WriteBootSector(string path, MigrationOptions options)
    {
        uint tscKhz;
        if (File.Exists("/dev/kvm"))
        {
            using var probe = new SampleVmm(1UL << 20);
            tscKhz = probe.TscKhz;
        }
        else
        {
            // For another VMM that emulates the CPU (QEMU's TCG): the host's clock rate, as the kernel reports it.
            tscKhz = HostCpuKhz();
            Console.WriteLine($"no /dev/kvm: paced by the host's {tscKhz} kHz from /proc/cpuinfo");
        }

        byte[] image = new byte[1 << 20];
        SourceVm.GuestFor(options, tscKhz).Sector().CopyTo(image, 0);
        File.WriteAllBytes(path, image);
        Console.WriteLine($"boot sector for {options.GuestBytes >> 20} MiB, TSC {tscKhz} kHz, {options.PagesPerSecond} pages/s: {path}");
        return 0;
    }

    /// <summary>Whether the destination's memory was checked whole: by the source's digest, or (post-copy, no digest) every page installed from a checksummed record.</summary>
    private static bool Verified(MigrationOutcome received) => received.MemoryVerified || received.PostCopy is { Complete: true };

    /// <summary>What vouches for the destination's memory: the digest after pre-copy; after post-copy (no digest: the guest ran before the last page) every page installed.</summary>
    private static string MemoryCheck(MigrationOutcome received) => received.MemoryVerified
        ? "every page matched the source's digest"
        : "every page arrived by post-copy, each record checksummed (no digest: the guest ran here before the last page)";

    private static string NotVerified(MigrationOutcome received) => received.PostCopy is { } postCopy
        ? $"post-copy did not complete: {postCopy}"
        : "the memory digest did not match";
}
