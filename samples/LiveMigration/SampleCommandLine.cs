// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.CommandLine;
using System.CommandLine.Parsing;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// The sample's command line: the in-process migration (no command), <c>listen</c>, <c>send</c> and
/// <c>boot-sector</c>, with every option checked before any work starts (a bad number, a negative rate, a port out of
/// range, a chart that cannot be written are errors with a message and exit code 1; <c>--help</c> exits 0).
/// </summary>
internal sealed class SampleCommandLine
{
    private readonly Option<int> Rate = Number("--rate", "Pages each writer dirties per second (0: the guest unthrottled)", 20_000, min: 0);
    private readonly Option<double> DowntimeMs = new("--downtime-ms") { Description = "The acceptable stop-copy time, in milliseconds", DefaultValueFactory = _ => 300, Recursive = true };
    private readonly Option<bool> PostCopy = new("--postcopy") { Description = "Post-copy once pre-copy stops converging (needs --connections 1 or more); listen: grant it", Recursive = true };
    private readonly Option<bool> Throttle = new("--throttle") { Description = "Slow the KVM guest's vCPU when pre-copy stalls (auto-converge: 20%, then 10 points more at each stall, to 99%)", Recursive = true };
    private readonly Option<bool> NoKvm = new("--no-kvm") { Description = "Simulated vCPU threads even where /dev/kvm exists", Recursive = true };
    private readonly Option<string?> Chart = new("--chart") { Description = "Draw the rounds (dirty pages, each tracker's harvest latency) as a PNG", Recursive = true };
    private readonly Option<string?> Csv = new("--csv") { Description = "Write the rounds as CSV", Recursive = true };
    private readonly Option<int> GuestMib = Number("--guest-mib", "Guest RAM in MiB", 64, min: 2);
    private readonly Option<int> WorkingSetMib = Number("--working-set-mib", "The guest's working set from 1 MiB, in MiB (0: all RAM above it)", 0, min: 0);
    private readonly Option<bool> VcpuOnly = new("--vcpu-only") { Description = "No emulated devices: the guest alone", Recursive = true };
    private readonly Option<int> WarmupMs = Number("--warmup-ms", "Let the guest run this long before migrating, in milliseconds", 0, min: 0);
    private readonly Option<int> DirtyRing = Number("--dirty-ring", "Log the vCPU's writes in a KVM dirty ring of N entries, a power of two (0: KVM's dirty bitmap)", 0, min: 0);
    private readonly Option<double> ShrinkTo = new("--shrink-to") { Description = "Past the first fit, copy on while each round's dirty set is at most this fraction of the last (0: switch at the first fit, as QEMU)", DefaultValueFactory = _ => 0.6, Recursive = true };
    private readonly Option<int> Port = Number("--port", "The TCP port", 0, min: 1, max: 65535, required: true);
    private readonly Option<string> Host = new("--host") { Description = "The destination's host name or address", Required = true };
    private readonly Option<string> Out = new("--out") { Description = "Where to write the 1 MiB disk image", Required = true };
    private readonly Option<int> Diffs = Number("--diffs", "Diffs to take after the full snapshot", 4, min: 1, max: 1000);
    private readonly Option<int> IntervalMs = Number("--interval-ms", "The guest runs this long between snapshots, in milliseconds", 200, min: 1);
    private readonly Option<bool> WriteProtect = new("--write-protect") { Description = "Resume the vCPU right after the harvest and write each link after, its pages write-protected and copied before the guest writes them (instead of a pause that covers the copy)" };
    private readonly Option<string?> Dir = new("--dir") { Description = "Where to write the snapshot files (a new temporary directory by default)" };
    private readonly Option<string?> TlsCert = new("--tls-cert") { Description = "This side's TLS certificate, PEM (with --tls-key and --tls-ca: mutual TLS 1.3)" };
    private readonly Option<string?> TlsKey = new("--tls-key") { Description = "The private key of --tls-cert, PEM" };
    private readonly Option<string?> TlsCa = new("--tls-ca") { Description = "The CA certificate(s) the peer's certificate must chain to, PEM" };
    private readonly Option<string[]> TlsAllow = new("--tls-allow") { Description = "A source subject allowed to send, such as CN=source-1 (repeatable)", AllowMultipleArgumentsPerToken = false };
    private readonly Option<string?> TlsServerName = new("--tls-server-name") { Description = "The name the destination's certificate must carry (default: --host)" };
    private readonly Option<bool> Insecure = new("--insecure") { Description = "Listen on every address without TLS: anyone who reaches the port can write a guest" };
    private readonly Option<string> CertsOut = new("--out") { Description = "The directory to write the test CA and certificates to", Required = true };
    private readonly Option<int> Connections = Number("--connections", "Data connections the pages go over besides the control connection, each on a thread of its own (0: the control connection carries them); listen: the most it grants", 0, min: 0, max: 64);
    private readonly Option<string?> TlsDir = new("--tls-dir") { Description = "In one process: mutual TLS 1.3 on every connection, with the certificates `certs --out DIR` wrote there" };
    private readonly Option<string?> SnapshotDir = new("--snapshot-dir") { Description = "Keep a snapshot chain of the source while it migrates, in this directory (KVM guest only)", Recursive = true };

    private SampleCommandLine()
    {
        Check<double>(DowntimeMs, ms => ms is > 0 and < 3_600_000 ? null : "--downtime-ms must be more than 0 and less than an hour");
        Check<double>(ShrinkTo, f => f is >= 0 and <= 1 ? null : "--shrink-to must be a fraction from 0 to 1");
        Check<int>(DirtyRing, n => n == 0 || (n >= 64 && n <= 65536 && (n & (n - 1)) == 0) ? null : "--dirty-ring must be 0 or a power of two from 64 to 65,536");
        Check<string?>(Chart, path => Unwritable(path, "--chart"));
        Check<string?>(Csv, path => Unwritable(path, "--csv"));
        Check<string>(Out, path => Unwritable(path, "--out"));
        Check<string?>(TlsDir, dir => dir is null || TestCertificates.Missing(dir) is not { } missing ? null : $"--tls-dir {dir}: no {missing} there (write them with `certs --out {dir}`)");
    }

    /// <summary>The whole command line, built anew on each call: its option objects belong to one command tree.</summary>
    public static RootCommand Build() => new SampleCommandLine().Root();

    private RootCommand Root()
    {
        var root = new RootCommand("Live migration of a running guest with DirtyLog: with no command, source and destination in this process over loopback TCP.")
        {
            Rate, DowntimeMs, NoKvm, Chart, Csv, GuestMib, WorkingSetMib, VcpuOnly, WarmupMs, DirtyRing, ShrinkTo, SnapshotDir, Connections, PostCopy, Throttle, TlsDir,
        };
        root.Validators.Add(result =>
        {
            if (PostCopyProblem(result) is { } problem)
            {
                result.AddError(problem);
            }
        });
        root.SetAction((result, _) => Program.RunInProcessAsync(OptionsFrom(result)));

        var listen = new Command("listen", "Be the destination: wait for a source on --port, resume the guest here and check it") { Port, TlsCert, TlsKey, TlsCa, TlsAllow, Insecure };
        listen.Validators.Add(result =>
        {
            if ((TlsProblem(result, destination: true) ?? PostCopyProblem(result)) is { } problem)
            {
                result.AddError(problem);
            }
        });
        listen.SetAction((result, _) => Program.ListenAsync(result.GetValue(Port), OptionsFrom(result)));
        var send = new Command("send", "Be the source: migrate a running guest to a destination that listens") { Host, Port, TlsCert, TlsKey, TlsCa, TlsServerName };
        send.Validators.Add(result =>
        {
            if ((TlsProblem(result, destination: false) ?? PostCopyProblem(result)) is { } problem)
            {
                result.AddError(problem);
            }
        });
        send.SetAction((result, _) => Program.SendAsync(result.GetValue(Host)!, result.GetValue(Port), OptionsFrom(result)));
        var certs = new Command("certs", "Write a test CA, a source (CN=source-1) and a destination (localhost) certificate, to try TLS; use your own PKI in production") { CertsOut };
        certs.SetAction((result, _) => Task.FromResult(TestCertificates.Write(result.GetValue(CertsOut)!)));
        root.Subcommands.Add(certs);
        var bootSector = new Command("boot-sector", "Write the guest's boot sector, patched for these options, as a 1 MiB disk image for another VMM") { Out };
        bootSector.SetAction((result, _) => Task.FromResult(Program.WriteBootSector(result.GetValue(Out)!, OptionsFrom(result))));
        root.Subcommands.Add(listen);
        root.Subcommands.Add(send);
        root.Subcommands.Add(bootSector);
        var snapshot = new Command("snapshot", "Take a full snapshot and a chain of diffs of the running guest, check the chain against a full snapshot and resume it in a new VM") { Diffs, IntervalMs, Dir, WriteProtect };
        snapshot.SetAction((result, _) => SnapshotDemo.RunAsync(OptionsFrom(result), result.GetValue(Diffs), TimeSpan.FromMilliseconds(result.GetValue(IntervalMs)), result.GetValue(Dir), result.GetValue(WriteProtect)));
        root.Subcommands.Add(snapshot);
        return root;
    }

    /// <summary>Parses and runs; help and parse errors go to <paramref name="output"/> and <paramref name="error"/>.</summary>
    public static Task<int> RunAsync(string[] args, TextWriter? output = null, TextWriter? error = null, CancellationToken cancellationToken = default)
    {
        ParseResult result = Build().Parse(args);
        var configuration = new InvocationConfiguration();
        if (output is not null)
        {
            configuration.Output = output;
        }

        if (error is not null)
        {
            configuration.Error = error;
        }

        return result.InvokeAsync(configuration, cancellationToken);
    }

    private MigrationOptions OptionsFrom(ParseResult result) => new()
    {
        PagesPerSecond = result.GetValue(Rate),
        DowntimeLimit = TimeSpan.FromMilliseconds(result.GetValue(DowntimeMs)),
        NoKvm = result.GetValue(NoKvm),
        PostCopy = result.GetValue(PostCopy),
        Throttle = result.GetValue(Throttle),
        ChartPath = result.GetValue(Chart),
        CsvPath = result.GetValue(Csv),
        GuestBytes = (ulong)result.GetValue(GuestMib) << 20,
        WorkingSetBytes = (ulong)result.GetValue(WorkingSetMib) << 20,
        VcpuOnly = result.GetValue(VcpuOnly),
        Warmup = TimeSpan.FromMilliseconds(result.GetValue(WarmupMs)),
        DirtyRingEntries = (uint)result.GetValue(DirtyRing),
        KeepCopyingWhileShrinkingTo = result.GetValue(ShrinkTo),
        SnapshotDirectory = result.GetValue(SnapshotDir),
        TlsCertificateFile = result.GetValue(TlsCert),
        TlsKeyFile = result.GetValue(TlsKey),
        TlsCaFile = result.GetValue(TlsCa),
        TlsAllow = result.GetValue(TlsAllow) ?? [],
        TlsServerName = result.GetValue(TlsServerName),
        Insecure = result.GetValue(Insecure),
        Connections = result.GetValue(Connections),
        TlsDirectory = result.GetValue(TlsDir),
    };

    /// <summary>Post-copy pushes pages on the data connections: it needs some.</summary>
    private string? PostCopyProblem(CommandResult result) =>
        result.GetValue(PostCopy) && result.GetValue(Connections) == 0 ? "--postcopy pushes pages on data connections of their own: give it --connections 1 or more" : null;

    /// <summary>TLS needs all three files; a destination says whom it allows, or listens in the clear only when told to.</summary>
    private string? TlsProblem(CommandResult result, bool destination)
    {
        string?[] files = [result.GetValue(TlsCert), result.GetValue(TlsKey), result.GetValue(TlsCa)];
        int given = files.Count(f => f is not null);
        if (given is not (0 or 3))
        {
            return "TLS needs --tls-cert, --tls-key and --tls-ca together";
        }

        if (files.FirstOrDefault(f => f is not null && !File.Exists(f)) is { } missing)
        {
            return $"{missing}: no such file";
        }

        if (!destination)
        {
            return null;
        }

        if (given == 0 && !result.GetValue(Insecure))
        {
            return "listen accepts connections on every address: give it --tls-cert, --tls-key, --tls-ca and --tls-allow (try `certs --out DIR`), or --insecure to accept anyone in the clear";
        }

        return given == 3 && (result.GetValue(TlsAllow) ?? []).Length == 0 ? "with TLS, --tls-allow names the source subjects allowed (such as CN=source-1)" : null;
    }

    private static Option<int> Number(string name, string description, int defaultValue, int min, int max = int.MaxValue, bool required = false)
    {
        var option = new Option<int>(name) { Description = description, Recursive = !required, Required = required };
        if (!required)
        {
            option.DefaultValueFactory = _ => defaultValue;
        }

        Check<int>(option, value => value >= min && value <= max ? null : max == int.MaxValue ? $"{name} must be at least {min}, not {value}" : $"{name} must be from {min} to {max}, not {value}");
        return option;
    }

    /// <summary>Adds a rule on the option's value; a value that did not parse is the parser's error already.</summary>
    private static void Check<T>(Option<T> option, Func<T, string?> rule) => option.Validators.Add(result =>
    {
        T value;
        try
        {
            value = result.GetValueOrDefault<T>();
        }
        catch (InvalidOperationException)
        {
            return; // not a T: the parser reports it ("Cannot parse argument ...")
        }

        if (rule(value) is { } error)
        {
            result.AddError(error);
        }
    });

    /// <summary>
    /// Whether a file can be written at <paramref name="path"/>, checked by writing a byte there (an existing file is
    /// emptied now rather than found unwritable after the whole migration; one that did not exist is removed again).
    /// </summary>
    private static string? Unwritable(string? path, string option)
    {
        if (string.IsNullOrEmpty(path))
        {
            return null;
        }

        bool existed = File.Exists(path);
        try
        {
            using (var probe = new FileStream(path, FileMode.Create, FileAccess.Write))
            {
                probe.WriteByte(0);
                probe.Flush(flushToDisk: false);
                probe.SetLength(0);
            }

            if (!existed)
            {
                File.Delete(path);
            }

            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return $"{option} {path}: cannot write there ({e.Message})";
        }
    }
}
