// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using DirtyLog.Migration.Sessions;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// Migrations whose pages go over several data connections beside the control connection, with the guest writing
/// all along: judged page by page (<see cref="SessionRig.Judge"/>), and with a data connection cut, a destination that
/// grants fewer or none, and connections at the destination that are not the source's.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class MigrationSessionDataConnectionTests
{
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(4)]
    [TestCase(8)]
    public async Task ARunningGuestMigratesOverDataConnectionsPageByPage(int connections)
    {
        using var rig = new SessionRig(sourceBytes: 32 * SessionRig.MiB, seed: connections) { DataConnections = connections };
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        long onData = rig.DataConnectionFactories.Connections.Sum(c => c.Source.Written);
        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), source.Error?.ToString());
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), destination.Error?.ToString());
            Assert.That(destination.MemoryVerified, Is.True, "the source's digest matched every page");
            Assert.That(rig.Guest.Writes, Is.GreaterThan(0));
            Assert.That(source.Rounds, Is.EqualTo(destination.Rounds));
            Assert.That(source.DataConnections, Is.EqualTo(connections));
            Assert.That(destination.DataConnections, Is.EqualTo(connections));
            Assert.That(rig.DataConnectionFactories.Connections, Has.Count.EqualTo(connections));
            Assert.That(onData, Is.GreaterThan(source.Bytes * 9 / 10), "the pages went over the data connections");
            Assert.That(rig.Connection!.Source.Written, Is.LessThan(1 << 20), "no page went over the control connection");
        });
    }

    [Test]
    public async Task ADataConnectionCutMidRoundFailsTheMigrationAndTheGuestRunsOnTheSource()
    {
        using var rig = new SessionRig(sourceBytes: 32 * SessionRig.MiB) { DataConnections = 4 };
        rig.DataConnectionFactories.CutBeforeWrite = (index, written) => index == 2 && written > 256 << 10;
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        string ends = $"source: {source.End} {source.Error?.Message}; destination: {destination.End} {destination.Error?.Message}";
        Assert.Multiple(() =>
        {
            Assert.That(rig.DataConnectionFactories.Connections[2].IsCut, Is.True, "the cut happened");
            Assert.That(rig.Judge(source, destination), Is.Null, ends);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnSource), ends);
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnSource), ends);
            Assert.That(rig.Guest.IsRunning, Is.True, "the guest never stopped on the source");
            Assert.That(rig.DestinationHooks.Resumed, Is.False, "nothing was resumed from a partial image");
            Assert.That(destination.Error?.Message, Does.Contain("data connection"), ends);
        });
    }

    [Test]
    public async Task TheDestinationCapsTheConnectionsTheSourceAsksFor()
    {
        using var rig = new SessionRig { DataConnections = 4 };
        rig.DestinationOptions = rig.DestinationOptions with { MaxDataConnections = 2 };
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), source.Error?.ToString());
            Assert.That(source.DataConnections, Is.EqualTo(2));
            Assert.That(destination.DataConnections, Is.EqualTo(2));
            Assert.That(rig.DataConnectionFactories.Connections, Has.Count.EqualTo(2), "the source opened only those granted");
        });
    }

    [Test]
    public async Task ADestinationThatAcceptsNoDataConnectionGetsThePagesOverTheControlConnection()
    {
        using var rig = new SessionRig { DataConnections = 4, DestinationAcceptsDataConnections = false };
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), source.Error?.ToString());
            Assert.That(destination.MemoryVerified, Is.True);
            Assert.That(source.DataConnections, Is.Zero);
            Assert.That(rig.DataConnectionFactories.Connections, Is.Empty);
            Assert.That(rig.Connection!.Source.Written, Is.GreaterThanOrEqualTo(source.Bytes));
        });
    }

    [Test]
    public async Task ConnectionsThatAreNotTheSourcesAreDroppedAndTheGrantedOnesStillAccepted()
    {
        using var rig = new SessionRig { DataConnections = 2 };
        // Before the source's own: one that speaks something else, one that claims a data connection of another stream.
        Stream garbage = await rig.DataConnectionFactories.QueueStrayAsync();
        await garbage.WriteAsync(new byte[24].Select((_, i) => (byte)(0x41 + i)).ToArray());
        Stream impostor = await rig.DataConnectionFactories.QueueStrayAsync();
        byte[] header = new byte[24];
        DirtyLog.Migration.PageStreamFormat.WriteDataConnectionHeader(header, 0, 2, 4096, token: 0x1234_5678_9abc_def0);
        await impostor.WriteAsync(header);

        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnDestination), source.Error?.ToString());
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnDestination), destination.Error?.ToString());
            Assert.That(destination.MemoryVerified, Is.True);
            Assert.That(destination.DataConnections, Is.EqualTo(2));
        });
    }

    [Test]
    public async Task DataConnectionsThatNeverArriveRefuseTheMigrationAtTheTimeoutAndNothingRuns()
    {
        using var rig = new SessionRig { DataConnections = 2 };
        rig.DestinationOptions = rig.DestinationOptions with { DataConnectionTimeout = TimeSpan.FromSeconds(1) };
        rig.DataConnectionFactories.CutBeforeWrite = (_, _) => true; // each dies on its first write: its header never arrives
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        string ends = $"source: {source.End} {source.Error?.Message}; destination: {destination.End} {destination.Error?.Message}";
        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null, ends);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnSource), ends);
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnSource), ends);
            Assert.That(rig.SourceHooks.Pauses, Is.Zero, ends);
            Assert.That(destination.Error?.Message, Does.Contain("data connections granted arrived"), ends);
        });
    }

    [Test]
    public async Task AFactoryThatGivesNoConnectionFailsTheHandshakeAndNothingStops()
    {
        using var rig = new SessionRig();
        rig.SourceOptions = rig.SourceOptions with { DataConnections = 2, ConnectionFactory = new NoConnection() };
        rig.DestinationOptions = rig.DestinationOptions with { ConnectionFactory = rig.DataConnectionFactories.Destination, DataConnectionTimeout = TimeSpan.FromSeconds(2) };
        (MigrationOutcome source, MigrationOutcome destination) = await rig.RunAsync();

        string ends = $"source: {source.End} {source.Error?.Message}; destination: {destination.End} {destination.Error?.Message}";
        Assert.Multiple(() =>
        {
            Assert.That(rig.Judge(source, destination), Is.Null, ends);
            Assert.That(source.End, Is.EqualTo(MigrationEnd.RunningOnSource), ends);
            Assert.That(source.Phase, Is.EqualTo(MigrationPhase.Handshake), ends);
            Assert.That(source.Error?.Message, Does.Contain("as null"), ends);
            Assert.That(destination.End, Is.EqualTo(MigrationEnd.RunningOnSource), ends);
            Assert.That(rig.SourceHooks.Pauses, Is.Zero);
        });
    }

    [Test]
    public void DataConnectionsWithoutAFactoryAreRefusedWhenTheSessionIsMade()
    {
        Assert.Multiple(() =>
        {
            Assert.That(() => new MigrationSourceOptions { DataConnections = 2 }.Validate(),
                Throws.ArgumentException.With.Property("ParamName").EqualTo("ConnectionFactory"));
            Assert.That(() => new MigrationSourceOptions { DataConnections = 65 }.Validate(), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => new MigrationDestinationOptions { MaxDataConnections = -1 }.Validate(), Throws.InstanceOf<ArgumentOutOfRangeException>());
            Assert.That(() => new MigrationDestinationOptions { DataConnectionTimeout = TimeSpan.Zero }.Validate(), Throws.InstanceOf<ArgumentOutOfRangeException>());
        });
    }

    /// <summary>A VMM's factory with a bug: it hands over no stream.</summary>
    private sealed class NoConnection : DirtyLog.Migration.Transport.IMigrationConnectionFactory
    {
        public ValueTask<Stream> OpenAsync(System.Threading.CancellationToken cancellationToken) => ValueTask.FromResult<Stream>(null!);
    }
}
