// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Memory;
using DirtyLog.Migration.Sessions;
using DirtyLog.Migration.Transport;
using DirtyLog.Native;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.Transport;

/// <summary>
/// The TCP connection factories under two sessions, as a VMM pair would use them: the control connection and the
/// data connections from one listener, every one of them mutual TLS, and a connection from an intruder among them.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class TcpMigrationTransportTests
{
    [Test]
    public async Task EveryDataConnectionIsTlsAndAnIntruderAmongThemIsRefusedWhileTheSourceMigrates()
    {
        using var pki = new TestPki();
        using var guest = new StaticGuest(seed: 11);
        using var mapping = new AnonymousMapping(StaticGuest.Bytes);
        var memory = new GuestMemoryView(mapping.Address, StaticGuest.Bytes);
        using var socket = Listen(out IPEndPoint endpoint);
        var listener = new TcpMigrationListener(socket, new MigrationTlsOptions { Certificate = pki.Destination, TrustedIssuers = [pki.Ca], AllowedSubjects = ["CN=source-1"] });
        var refused = new List<TlsRefusal>();
        var why = new List<string>();
        listener.Refused += (_, e) =>
        {
            refused.Add(e.Refusal);
            why.Add(e.Message);
        };
        var connector = new TcpMigrationConnector("127.0.0.1", endpoint.Port, new MigrationTlsOptions { Certificate = pki.Source, TrustedIssuers = [pki.Ca], ServerName = "destination.test" });

        Task<MigrationOutcome> received = Task.Run(async () =>
        {
            await using Stream control = await listener.OpenAsync(CancellationToken.None);
            return await new MigrationDestination(memory, control, new Hooks(), new MigrationDestinationOptions { MemoryStartsZeroed = true, ConnectionFactory = listener }).RunAsync();
        });
        await using Stream control = await connector.OpenAsync(CancellationToken.None);

        // An intruder with a certificate from the trusted issuer, not allowed: connected before the source's data
        // connections (the listener accepts in that order), its handshake running meanwhile.
        using var intruderCertificate = TestPki.Issue(pki.Ca, "CN=intruder", null, server: false);
        var intruderSocket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await intruderSocket.ConnectAsync(endpoint);
        Task intruder = Task.Run(async () =>
        {
            await using var network = new NetworkStream(intruderSocket, ownsSocket: true);
            try
            {
                await using Stream stream = await MigrationTls.ConnectAsync(network, new MigrationTlsOptions { Certificate = intruderCertificate, TrustedIssuers = [pki.Ca], ServerName = "destination.test" });
                await stream.WriteAsync(new byte[24]); // TLS 1.3: the refusal of its certificate shows on its first use
                await stream.ReadExactlyAsync(new byte[1]);
            }
            catch (Exception e) when (e is IOException or MigrationTransportException or System.Security.Authentication.AuthenticationException or EndOfStreamException)
            {
                // Refused, as it should be.
            }
        });
        MigrationOutcome sent = await guest.MigrateAsync(control, new MigrationSourceOptions { DataConnections = 4, ConnectionFactory = connector, HandshakeTimeout = TimeSpan.FromSeconds(20) });
        MigrationOutcome outcome = await received.WaitAsync(TimeSpan.FromSeconds(30));
        await intruder.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Multiple(() =>
        {
            Assert.That(sent.End, Is.EqualTo(MigrationEnd.RunningOnDestination), sent.Error?.ToString());
            Assert.That(outcome.End, Is.EqualTo(MigrationEnd.RunningOnDestination), outcome.Error?.ToString());
            Assert.That(outcome.DataConnections, Is.EqualTo(4));
            Assert.That(outcome.MemoryVerified, Is.True);
            Assert.That(memory.Slice(0, StaticGuest.Bytes).SequenceEqual(guest.Memory.Slice(0, StaticGuest.Bytes)), Is.True, "the source's guest, byte for byte");
            Assert.That(refused, Is.EqualTo(new[] { TlsRefusal.NotAuthorized }), $"the intruder, and only it: {string.Join("; ", why)}");
        });
    }

    [Test]
    public async Task PlainDataConnectionsOnLoopbackMigrate()
    {
        using var guest = new StaticGuest(seed: 12);
        using var mapping = new AnonymousMapping(StaticGuest.Bytes);
        var memory = new GuestMemoryView(mapping.Address, StaticGuest.Bytes);
        using var socket = Listen(out IPEndPoint endpoint);
        var listener = new TcpMigrationListener(socket, tls: null);
        var connector = new TcpMigrationConnector("127.0.0.1", endpoint.Port, tls: null);
        Task<MigrationOutcome> received = Task.Run(async () =>
        {
            await using Stream control = await listener.OpenAsync(CancellationToken.None);
            return await new MigrationDestination(memory, control, new Hooks(), new MigrationDestinationOptions { ConnectionFactory = listener }).RunAsync();
        });
        await using Stream control = await connector.OpenAsync(CancellationToken.None);
        MigrationOutcome sent = await guest.MigrateAsync(control, new MigrationSourceOptions { DataConnections = 2, ConnectionFactory = connector });
        MigrationOutcome outcome = await received.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Multiple(() =>
        {
            Assert.That(sent.End, Is.EqualTo(MigrationEnd.RunningOnDestination), sent.Error?.ToString());
            Assert.That(outcome.DataConnections, Is.EqualTo(2));
            Assert.That(memory.Slice(0, StaticGuest.Bytes).SequenceEqual(guest.Memory.Slice(0, StaticGuest.Bytes)), Is.True);
        });
    }

    [Test]
    public void APlainListenerOnEveryAddressIsRefusedUnlessTheVmmOptsOut()
    {
        using var any = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        any.Bind(new IPEndPoint(IPAddress.Any, 0));
        any.Listen(1);
        Assert.Multiple(() =>
        {
            Assert.That(() => new TcpMigrationListener(any, tls: null), Throws.ArgumentException.With.Message.Contains("insecure"));
            Assert.That(() => new TcpMigrationListener(any, tls: null, insecure: true), Throws.Nothing);
            Assert.That(() => new TcpMigrationConnector("", 1, null), Throws.ArgumentException);
            Assert.That(() => new TcpMigrationConnector("localhost", 70000, null), Throws.InstanceOf<ArgumentOutOfRangeException>());
        });
    }

    private static Socket Listen(out IPEndPoint endpoint)
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        endpoint = (IPEndPoint)listener.LocalEndPoint!;
        return listener;
    }

    private sealed class Hooks : IMigrationDestinationHooks
    {
        public ValueTask LoadStateAsync(MigrationStateSection section, CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask ResumeAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;
    }
}
