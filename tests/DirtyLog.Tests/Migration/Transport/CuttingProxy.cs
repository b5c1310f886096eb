// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Tests.Migration.Transport;

/// <summary>
/// A link between a source and a destination that a test breaks: a loopback TCP relay that forwards each connection
/// made to it to the destination's port, byte for byte (TLS passes through it untouched), and that resets every
/// connection it carries when the test says, as a dead link does to both ends. New connections are carried again.
/// </summary>
internal sealed class CuttingProxy : IDisposable
{
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly IPEndPoint _target;
    private readonly List<Socket> _carried = [];
    private readonly Lock _gate = new();
    private readonly Task _accepting;

    public CuttingProxy(IPEndPoint target)
    {
        _target = target;
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
        _accepting = Task.Run(AcceptAsync);
    }

    /// <summary>Where the source connects.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    /// <summary>Asked before each chunk from the source is forwarded; true resets every connection carried.</summary>
    public Func<bool>? CutBeforeForward { get; set; }

    /// <summary>Times the link was cut.</summary>
    public int Cuts => Volatile.Read(ref _cuts);

    private int _cuts;

    /// <summary>Resets every connection carried (both ends read a reset).</summary>
    public void CutAll()
    {
        lock (_gate)
        {
            foreach (Socket socket in _carried)
            {
                try
                {
                    socket.LingerState = new LingerOption(true, 0);
                    socket.Close();
                }
                catch (ObjectDisposedException)
                {
                }
            }

            _carried.Clear();
        }

        Interlocked.Increment(ref _cuts);
    }

    public void Dispose()
    {
        _listener.Dispose();
        CutAll();
        _accepting.Wait(TimeSpan.FromSeconds(5));
    }

    private async Task AcceptAsync()
    {
        while (true)
        {
            Socket client, server;
            try
            {
                client = await _listener.AcceptAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return; // the proxy was disposed
            }

            server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            client.NoDelay = true;
            try
            {
                await server.ConnectAsync(_target).ConfigureAwait(false);
            }
            catch (SocketException)
            {
                client.Dispose();
                server.Dispose();
                continue;
            }

            lock (_gate)
            {
                _carried.Add(client);
                _carried.Add(server);
            }

            _ = Task.Run(() => PumpAsync(client, server, fromSource: true));
            _ = Task.Run(() => PumpAsync(server, client, fromSource: false));
        }
    }

    private async Task PumpAsync(Socket from, Socket to, bool fromSource)
    {
        byte[] buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                int read = await from.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false);
                if (read == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }

                if (fromSource && CutBeforeForward?.Invoke() == true)
                {
                    CutAll();
                    return;
                }

                await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Cut, or the peer went: the other direction's pump ends too once its socket closes.
            from.Dispose();
            to.Dispose();
        }
    }
}
