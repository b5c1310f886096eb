// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using DirtyLog.Migration.Transport;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// The two ends of a VMM pair's data connections, over loopback TCP: the source's factory connects (each connection a
/// <see cref="CuttableConnection"/> the test may cut), the destination's accepts them in the order they were opened,
/// after whatever the test queued before them (a stray or hostile connection).
/// </summary>
internal sealed class PairedConnectionFactories : IDisposable
{
    private readonly Channel<Stream> _accepted = Channel.CreateUnbounded<Stream>();
    private readonly List<CuttableConnection> _connections = [];
    private readonly List<IDisposable> _owned = [];
    private TaskCompletionSource? _hold;

    public PairedConnectionFactories()
    {
        Source = new Side(this, accept: false);
        Destination = new Side(this, accept: true);
    }

    /// <summary>Asked before each write of data connection N (its index in opening order) with its bytes written; true cuts it.</summary>
    public Func<int, long, bool>? CutBeforeWrite { get; set; }

    public IMigrationConnectionFactory Source { get; }

    /// <summary>
    /// Holds the destination's reads of every data connection from now on, until <see cref="ReleaseDestinationReads"/>
    /// (a read already waiting takes what arrives; the next waits): what the source pushes stays on its way.
    /// </summary>
    public void HoldDestinationReads() => Volatile.Write(ref _hold, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

    public void ReleaseDestinationReads() => Volatile.Read(ref _hold)?.TrySetResult();

    /// <summary>Whether the source's factory fails from now on (the destination can no longer be reached).</summary>
    public bool Unreachable { get; set; }

    public IMigrationConnectionFactory Destination { get; }

    /// <summary>The data connections the source opened, in order.</summary>
    public IReadOnlyList<CuttableConnection> Connections
    {
        get
        {
            lock (_connections)
            {
                return [.. _connections];
            }
        }
    }

    /// <summary>Queues a connection for the destination to accept before the source's next; the test writes its source end.</summary>
    public async Task<Stream> QueueStrayAsync()
    {
        CuttableConnection stray = await CuttableConnection.OpenAsync(destinationOwnsSocket: true).ConfigureAwait(false);
        lock (_connections)
        {
            _owned.Add(stray);
        }

        _accepted.Writer.TryWrite(stray.Destination);
        return stray.Source;
    }

    public void Dispose()
    {
        lock (_connections)
        {
            foreach (CuttableConnection connection in _connections)
            {
                connection.Dispose();
            }

            foreach (IDisposable owned in _owned)
            {
                owned.Dispose();
            }
        }
    }

    private async ValueTask<Stream> ConnectAsync()
    {
        if (Unreachable)
        {
            throw new IOException("connection refused (the test made the destination unreachable)");
        }

        CuttableConnection connection = await CuttableConnection.OpenAsync(destinationOwnsSocket: true).ConfigureAwait(false);
        int index;
        lock (_connections)
        {
            index = _connections.Count;
            _connections.Add(connection);
        }

        connection.Source.CutBeforeWrite = written => CutBeforeWrite?.Invoke(index, written) == true;
        _accepted.Writer.TryWrite(new HeldStream(connection.Destination, () => Volatile.Read(ref _hold)?.Task ?? Task.CompletedTask));
        return connection.Source;
    }

    private sealed class Side(PairedConnectionFactories pair, bool accept) : IMigrationConnectionFactory
    {
        public ValueTask<Stream> OpenAsync(CancellationToken cancellationToken) =>
            accept ? pair._accepted.Reader.ReadAsync(cancellationToken) : pair.ConnectAsync();
    }
}
