// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks;
using DirtyLog.Samples.LiveMigration;
using NUnit.Framework;

namespace DirtyLog.Tests.Samples;

/// <summary>The sample's listen and send commands, as two shells would run them, and a connection that drops.</summary>
[TestFixture]
[Category("EndToEnd")]
public class TwoProcessModeTests
{
    private static readonly MigrationOptions Small = new() { GuestBytes = 16UL << 20, DeviceBytes = 4UL << 20, PagesPerSecond = 5_000 };

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    [TestCase(0)]
    [TestCase(4)]
    public async Task ListenAndSendMigrateAndTheDestinationVerifiesTheMemoryDigest(int connections)
    {
        int port = FreePort();
        // ListenAsync binds and listens before its first await: once it has returned its task, a connect is accepted.
        MigrationOptions plain = Small with { Connections = connections, Insecure = true };
        Task<int> destination = Program.ListenAsync(port, plain);
        int source = await Program.SendAsync("127.0.0.1", port, plain);
        Assert.That((source, await destination.WaitAsync(TimeSpan.FromMinutes(1))), Is.EqualTo((0, 0)));
    }

    /// <summary>
    /// Writers far faster than the link and a 1 ms limit: pre-copy stalls, both sides switch to post-copy, and the
    /// destination still verifies every page (the meter shows the destination's post-copy).
    /// </summary>
    [Test]
    public async Task ListenAndSendSwitchToPostCopyWhenPreCopyDoesNotConverge()
    {
        DirtyLog.Tests.Migration.PostCopy.PostCopyRig.RequireUserfaultfd();
        int postCopies = 0;
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name == DirtyLog.Harvesting.DirtyLogTelemetry.PostCopyDuration)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "dirtylog.migration.side" && (string?)tag.Value == "destination")
                {
                    System.Threading.Interlocked.Increment(ref postCopies);
                }
            }
        });
        listener.Start();

        int port = FreePort();
        MigrationOptions options = Small with { Connections = 2, PostCopy = true, Insecure = true, PagesPerSecond = 1_000_000, DowntimeLimit = TimeSpan.FromMilliseconds(1) };
        Task<int> destination = Program.ListenAsync(port, options);
        int source = await Program.SendAsync("127.0.0.1", port, options);
        Assert.Multiple(async () =>
        {
            Assert.That((source, await destination.WaitAsync(TimeSpan.FromMinutes(1))), Is.EqualTo((0, 0)));
            Assert.That(postCopies, Is.GreaterThanOrEqualTo(1), "the destination ran post-copy");
        });
    }

    [TestCase(0)]
    [TestCase(4)]
    public async Task ListenAndSendMigrateOverMutualTlsWithTheCertsCommandsCertificates(int connections)
    {
        string folder = Directory.CreateTempSubdirectory("dirtylog-certs-").FullName;
        try
        {
            Assert.That(TestCertificates.Write(folder), Is.Zero);
            MigrationOptions tls(string side) => Small with
            {
                Connections = connections,
                TlsCertificateFile = Path.Combine(folder, side + ".pem"),
                TlsKeyFile = Path.Combine(folder, side + ".key"),
                TlsCaFile = Path.Combine(folder, "ca.pem"),
            };
            int port = FreePort();
            Task<int> destination = Program.ListenAsync(port, tls("destination") with { TlsAllow = ["CN=source-1"] });
            int intruder = await Program.SendAsync("127.0.0.1", port, tls("destination")); // a certificate the destination does not allow
            int source = await Program.SendAsync("127.0.0.1", port, tls("source"));
            Assert.That((intruder, source, await destination.WaitAsync(TimeSpan.FromMinutes(1))), Is.EqualTo((1, 0, 0)), "the intruder refused, the source migrated");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Test]
    public async Task ADestinationWhoseSourceGoesAwayReportsTheMigrationIncomplete()
    {
        int port = FreePort();
        Task<int> destination = Program.ListenAsync(port, Small);
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, port);
            byte[] header = new byte[24];
            "DLPS"u8.CopyTo(header);
            header[4] = 1;
            BitConverter.GetBytes(4096u).CopyTo(header, 8);
            BitConverter.GetBytes(20UL << 20).CopyTo(header, 16);
            await client.GetStream().WriteAsync(header);
        }

        Assert.That(await destination.WaitAsync(TimeSpan.FromMinutes(1)), Is.EqualTo(1));
    }

    [Test]
    public async Task ASourceWhoseDestinationGoesAwayEndsCleanlyWithTheGuestRunning()
    {
        int port = FreePort();
        using var listener = new TcpListener(IPAddress.Loopback, port);
        listener.Start();
        // A downtime limit nothing fits keeps the source sending round after round, long after the reset arrives.
        Task<int> source = Program.SendAsync("127.0.0.1", port, Small with { DowntimeLimit = TimeSpan.Zero, PagesPerSecond = 50_000 });
        using (TcpClient accepted = await listener.AcceptTcpClientAsync())
        {
            try
            {
                accepted.Client.LingerState = new LingerOption(true, 0); // reset, as a crashed destination would
            }
            catch (SocketException)
            {
                // The connection is already broken: the destination is gone either way.
            }
        }

        Assert.That(await source.WaitAsync(TimeSpan.FromMinutes(1)), Is.EqualTo(1));
    }

    [TestCase(new[] { "--bogus" }, "--bogus")]
    [TestCase(new[] { "fly" }, "fly")]
    [TestCase(new[] { "--rate" }, "--rate")]
    [TestCase(new[] { "send", "--port", "1" }, "--host")]
    [TestCase(new[] { "--tls-dir", "/nonexistent-dirtylog-certs" }, "--tls-dir")]
    public async Task BadCommandLinesSayWhatIsWrongAndExitWithOne(string[] args, string named)
    {
        // Through Program.Main, as the shell runs it (CommandLineTests cover each option's rule).
        var error = new System.IO.StringWriter();
        System.IO.TextWriter saved = Console.Error;
        Console.SetError(error);
        try
        {
            Assert.That(await Program.Main(args), Is.EqualTo(1));
        }
        finally
        {
            Console.SetError(saved);
        }

        Assert.That(error.ToString(), Does.Contain(named));
    }
}
