// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration.Sessions;

namespace DirtyLog.Tests.Migration.Sessions;

/// <summary>
/// A loopback TCP connection between a source and a destination that a test cuts: a reset in both directions (linger
/// 0), at a point the test chooses (before a write of the source's, or from a hook). What each side sees is what it
/// would see of a dead peer or a dead link.
/// </summary>
internal sealed class CuttableConnection : IDisposable
{
    private readonly Socket _source;
    private readonly Socket _destination;
    private int _cut;

    private CuttableConnection(Socket source, Socket destination, bool destinationOwnsSocket)
    {
        _source = source;
        _destination = destination;
        Source = new CuttingStream(this, new NetworkStream(source, ownsSocket: false));
        Destination = new NetworkStream(destination, ownsSocket: destinationOwnsSocket);
    }

    /// <summary>The source's end; <see cref="CuttingStream.CutBeforeWrite"/> decides cuts on its writes.</summary>
    public CuttingStream Source { get; }

    /// <summary>The destination's end.</summary>
    public NetworkStream Destination { get; }

    public bool IsCut => Volatile.Read(ref _cut) != 0;

    /// <param name="destinationOwnsSocket">Whether disposing <see cref="Destination"/> closes the socket (a data connection's, which its session disposes).</param>
    public static async Task<CuttableConnection> OpenAsync(bool destinationOwnsSocket = false)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Task<Socket> accepted = listener.AcceptAsync();
        await client.ConnectAsync(listener.LocalEndPoint!).ConfigureAwait(false);
        Socket server = await accepted.ConfigureAwait(false);
        server.NoDelay = true;
        return new CuttableConnection(client, server, destinationOwnsSocket);
    }

    /// <summary>Resets the connection: both peers' reads and writes fail from now on.</summary>
    public void Cut()
    {
        if (Interlocked.Exchange(ref _cut, 1) == 0)
        {
            _source.LingerState = new LingerOption(true, 0);
            _source.Close(); // a reset to the destination; the source's own calls fail with the socket closed
        }
    }

    /// <summary>What a source VMM does once its session returned: closes its end (the destination reads the end of the stream).</summary>
    public void CloseSource() => Close(_source);

    /// <summary>What a destination VMM does once its session returned.</summary>
    public void CloseDestination() => Close(_destination);

    public void Dispose()
    {
        Source.Dispose();
        Destination.Dispose();
        _source.Dispose();
        _destination.Dispose();
    }

    /// <summary>The source's stream: every write may first cut the connection, as the test decides.</summary>
    internal sealed class CuttingStream(CuttableConnection connection, NetworkStream inner) : PassThroughStream(inner)
    {
        private long _written;

        /// <summary>Bytes written so far.</summary>
        public long Written => Interlocked.Read(ref _written);

        /// <summary>Asked before each write with the bytes written so far; true cuts the connection there.</summary>
        public Func<long, bool>? CutBeforeWrite { get; set; }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            CutIfAsked(buffer.Length);
            Inner.Write(buffer);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            CutIfAsked(buffer.Length);
            return Inner.WriteAsync(buffer, cancellationToken);
        }

        private void CutIfAsked(int bytes)
        {
            if (CutBeforeWrite?.Invoke(Interlocked.Read(ref _written)) == true)
            {
                connection.Cut();
            }

            Interlocked.Add(ref _written, bytes);
        }
    }

    private static void Close(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Cut already.
        }

        socket.Close();
    }
}
