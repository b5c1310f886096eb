// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Harvesting;
using DirtyLog.Memory;
using DirtyLog.Migration.Sessions;
using DirtyLog.Migration.Transport;
using DirtyLog.Native;
using DirtyLog.Testing;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.Transport;

/// <summary>
/// Mutual TLS on the migration channel, with certificates made in the test: every refusal is named, happens before a
/// byte of guest memory is applied, and leaves the destination waiting for the authorized source, which then migrates.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class MigrationTlsTests
{
    private const int Bytes = 4 << 20;

    private enum Bad
    {
        NoCertificate,
        OtherIssuer,
        Expired,
        NotYetValid,
        NotAllowed,
        Plain,
    }

    [TestCase(Bad.NoCertificate, TlsRefusal.NoCertificate)]
    [TestCase(Bad.OtherIssuer, TlsRefusal.UntrustedIssuer)]
    [TestCase(Bad.Expired, TlsRefusal.Expired)]
    [TestCase(Bad.NotYetValid, TlsRefusal.NotYetValid)]
    [TestCase(Bad.NotAllowed, TlsRefusal.NotAuthorized)]
    [TestCase(Bad.Plain, TlsRefusal.PlainAtTlsEndpoint)]
    public async Task ARefusedSourceHasNothingAppliedAndTheAuthorizedSourceMigratesAfterIt(object bad, TlsRefusal expected)
    {
        using var pki = new TestPki();
        using var source = new StaticGuest(seed: 7);
        using var destinationMapping = new AnonymousMapping(Bytes);
        var destinationMemory = new GuestMemoryView(destinationMapping.Address, Bytes);
        using var listener = Listen(out IPEndPoint endpoint);
        MigrationTlsOptions destination = new() { Certificate = pki.Destination, TrustedIssuers = [pki.Ca], AllowedSubjects = ["CN=source-1"] };
        var refusals = new List<(TlsRefusal Refusal, string Message, bool MemoryUntouched)>();
        Task<MigrationOutcome> received = ReceiveFromTheFirstAuthorizedAsync(listener, destination, destinationMemory, refusals);

        // The bad source first.
        using (TcpClient client = await ConnectAsync(endpoint))
        {
            await BadSourceAsync((Bad)bad, pki, client.GetStream(), source);
        }

        // Then the authorized one, on the same listener.
        using (TcpClient client = await ConnectAsync(endpoint))
        {
            await using SslStream tls = await MigrationTls.ConnectAsync(client.GetStream(),
                new MigrationTlsOptions { Certificate = pki.Source, TrustedIssuers = [pki.Ca], ServerName = "destination.test" });
            MigrationOutcome sent = await source.MigrateAsync(tls);
            Assert.That(sent.End, Is.EqualTo(MigrationEnd.RunningOnDestination), sent.Error?.ToString());
        }

        MigrationOutcome outcome = await received.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Multiple(() =>
        {
            Assert.That(refusals, Has.Count.EqualTo(1));
            Assert.That(refusals[0].Refusal, Is.EqualTo(expected), refusals[0].Message);
            Assert.That(refusals[0].MemoryUntouched, Is.True, "nothing applied by the refused source");
            Assert.That(outcome.End, Is.EqualTo(MigrationEnd.RunningOnDestination));
            Assert.That(destinationMemory.Slice(0, Bytes).SequenceEqual(source.Memory.Slice(0, Bytes)), Is.True, "the authorized source's guest, byte for byte");
        });
    }

    [Test]
    public async Task ADestinationWithAnotherNameIsRefusedByTheSourceBeforeAPageGoes()
    {
        using var pki = new TestPki();
        using var listener = Listen(out IPEndPoint endpoint);
        // What the destination received: in TLS 1.3 its side of the handshake can complete before the source's check
        // refuses, so it is judged by what it reads: not a byte.
        Task<int> accepting = Task.Run(async () =>
        {
            using Socket socket = await listener.AcceptAsync();
            using var network = new NetworkStream(socket);
            try
            {
                await using SslStream tls = await MigrationTls.AcceptAsync(network, new MigrationTlsOptions { Certificate = pki.Destination, TrustedIssuers = [pki.Ca], AllowedSubjects = ["CN=source-1"] });
                return await tls.ReadAsync(new byte[1]);
            }
            catch (Exception e) when (e is MigrationTransportException or IOException)
            {
                return 0;
            }
        });
        using TcpClient client = await ConnectAsync(endpoint);
        var refused = Assert.ThrowsAsync<MigrationTransportException>(() => MigrationTls.ConnectAsync(client.GetStream(),
            new MigrationTlsOptions { Certificate = pki.Source, TrustedIssuers = [pki.Ca], ServerName = "impostor.test" }))!;
        client.Close();

        Assert.Multiple(async () =>
        {
            Assert.That(refused.Refusal, Is.EqualTo(TlsRefusal.NameMismatch));
            Assert.That(refused.Message, Does.Contain("impostor.test"));
            Assert.That(await accepting.WaitAsync(TimeSpan.FromSeconds(30)), Is.Zero, "the destination read not a byte");
        });
    }

    [Test]
    public async Task TlsAtAPlainDestinationIsRefusedByItsHeaderCheck()
    {
        using var pki = new TestPki();
        using var listener = Listen(out IPEndPoint endpoint);
        using var destinationMapping = new AnonymousMapping(Bytes);
        var hooks = new NothingToLoad();
        Task<MigrationOutcome> received = Task.Run(async () =>
        {
            using Socket socket = await listener.AcceptAsync();
            using var network = new NetworkStream(socket);
            return await new MigrationDestination(new GuestMemoryView(destinationMapping.Address, Bytes), network, hooks).RunAsync();
        });
        using TcpClient client = await ConnectAsync(endpoint);
        var failed = Assert.ThrowsAsync<MigrationTransportException>(() => MigrationTls.ConnectAsync(client.GetStream(),
            new MigrationTlsOptions { Certificate = pki.Source, TrustedIssuers = [pki.Ca], ServerName = "destination.test", HandshakeTimeout = TimeSpan.FromSeconds(10) }))!;
        MigrationOutcome outcome = await received.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Multiple(() =>
        {
            Assert.That(failed.Refusal, Is.EqualTo(TlsRefusal.HandshakeFailed));
            Assert.That(outcome.End, Is.EqualTo(MigrationEnd.RunningOnSource));
            Assert.That(outcome.Error!.Message, Does.Contain("TLS at a plain endpoint"));
            Assert.That(hooks.Resumed, Is.False);
        });
    }

    [Test]
    public async Task APinnedSelfSignedSourceIsAcceptedWithoutAnIssuer()
    {
        using var pki = new TestPki();
        using X509Certificate2 selfSigned = TestPki.MakeCa("CN=pinned-source");
        using var listener = Listen(out IPEndPoint endpoint);
        Task<string> accepting = Task.Run(async () =>
        {
            using Socket socket = await listener.AcceptAsync();
            using var network = new NetworkStream(socket);
            await using SslStream tls = await MigrationTls.AcceptAsync(network, new MigrationTlsOptions { Certificate = pki.Destination, AllowedPins = [MigrationTls.PinOf(selfSigned)] });
            return tls.RemoteCertificate!.Subject;
        });
        using TcpClient client = await ConnectAsync(endpoint);
        await using SslStream source = await MigrationTls.ConnectAsync(client.GetStream(), new MigrationTlsOptions { Certificate = selfSigned, AllowedPins = [MigrationTls.PinOf(pki.Destination)] });

        Assert.That(await accepting.WaitAsync(TimeSpan.FromSeconds(30)), Is.EqualTo("CN=pinned-source"));
    }

    /// <summary>The destination's loop: refused connections are counted (with whether memory was still untouched), the first authorized one migrates.</summary>
    private static Task<MigrationOutcome> ReceiveFromTheFirstAuthorizedAsync(Socket listener, MigrationTlsOptions options, GuestMemoryView memory,
        List<(TlsRefusal, string, bool)> refusals) => Task.Run(async () =>
        {
            while (true)
            {
                using Socket socket = await listener.AcceptAsync();
                using var network = new NetworkStream(socket);
                SslStream tls;
                try
                {
                    tls = await MigrationTls.AcceptAsync(network, options);
                }
                catch (MigrationTransportException e)
                {
                    refusals.Add((e.Refusal, e.Message, memory.Slice(0, Bytes).IndexOfAnyExcept((byte)0) < 0));
                    continue; // keep waiting for an authorized source
                }

                await using (tls)
                {
                    return await new MigrationDestination(memory, tls, new NothingToLoad(), new MigrationDestinationOptions { MemoryStartsZeroed = true }).RunAsync();
                }
            }
        });

    private static async Task BadSourceAsync(Bad bad, TestPki pki, NetworkStream connection, StaticGuest source)
    {
        X509Certificate2? certificate = bad switch
        {
            Bad.OtherIssuer => TestPki.Issue(pki.OtherCa, "CN=source-1", null, server: false),
            Bad.Expired => TestPki.Issue(pki.Ca, "CN=source-1", null, server: false, from: -20, to: -1),
            Bad.NotYetValid => TestPki.Issue(pki.Ca, "CN=source-1", null, server: false, from: 1, to: 20),
            Bad.NotAllowed => TestPki.Issue(pki.Ca, "CN=intruder", null, server: false),
            _ => null,
        };
        try
        {
            if (bad == Bad.Plain)
            {
                MigrationOutcome plain = await source.MigrateAsync(connection);
                Assert.That(plain.End, Is.EqualTo(MigrationEnd.RunningOnSource), "a plain source gets nowhere");
                return;
            }

            await using var tls = new SslStream(connection, leaveInnerStreamOpen: true);
            var options = new SslClientAuthenticationOptions
            {
                TargetHost = "destination.test",
                EnabledSslProtocols = SslProtocols.Tls13,
                RemoteCertificateValidationCallback = (_, presented, _, _) => presented?.GetCertHashString() == pki.Destination.GetCertHashString(), // the real destination: only our certificate is bad
                LocalCertificateSelectionCallback = (_, _, _, _, _) => certificate!,
            };
            if (certificate is null)
            {
                options.LocalCertificateSelectionCallback = null;
            }

            await tls.AuthenticateAsClientAsync(options);
            MigrationOutcome outcome = await source.MigrateAsync(tls); // TLS 1.3: the refusal of our certificate shows on the first read
            Assert.That(outcome.End, Is.EqualTo(MigrationEnd.RunningOnSource));
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            // Refused during the handshake itself.
        }
        finally
        {
            certificate?.Dispose();
        }
    }

    private static Socket Listen(out IPEndPoint endpoint)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(4);
        endpoint = (IPEndPoint)listener.LocalEndPoint!;
        return listener;
    }

    private static async Task<TcpClient> ConnectAsync(IPEndPoint endpoint)
    {
        var client = new TcpClient { NoDelay = true };
        await client.ConnectAsync(endpoint);
        return client;
    }

    private sealed class NothingToLoad : IMigrationDestinationHooks
    {
        public bool Resumed { get; private set; }

        public ValueTask LoadStateAsync(MigrationStateSection section, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask ResumeAsync(CancellationToken cancellationToken)
        {
            Resumed = true;
            return ValueTask.CompletedTask;
        }
    }
}
