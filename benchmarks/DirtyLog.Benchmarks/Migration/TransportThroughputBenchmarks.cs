// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Threading;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Migration.Transport;
using DirtyLog.Native;

namespace DirtyLog.Benchmarks.Migration;

/// <summary>
/// A first full pass of 1 GiB, half of it zero pages (blocks of 64 pages, data and zero in turn), from one mapping to
/// another over loopback TCP: the page stream in the clear and over mutual TLS 1.3, on one connection and over 2 and 4
/// data connections (each with a thread of its own at both ends), against the two limits in the same run: a plain
/// memcpy of the whole GiB (the memory's), and a raw socket carrying the data pages' bytes with no framing, checksums
/// or zero-page detection (the socket's). Both ends run at once, as on two hosts, sharing this machine's cores.
/// </summary>
[InvocationCount(1)]
[WarmupCount(1)]
[IterationCount(7)]
public class TransportThroughputBenchmarks
{
    private const ulong Bytes = 1UL << 30;
    private const ulong BlockBytes = 64 * 4096;

    private AnonymousMapping _source = null!;
    private AnonymousMapping _destination = null!;
    private Socket _sourceSocket = null!;
    private Socket _destinationSocket = null!;
    private NetworkStream _sourcePlain = null!;
    private NetworkStream _destinationPlain = null!;
    private Stream _sourceTls = null!;
    private Stream _destinationTls = null!;
    private X509Certificate2 _sourceCertificate = null!;
    private X509Certificate2 _destinationCertificate = null!;
    private readonly System.Collections.Generic.List<(Stream Source, Stream Destination)> _plainPairs = [];
    private readonly System.Collections.Generic.List<(Stream Source, Stream Destination)> _tlsPairs = [];

    [GlobalSetup]
    public void Setup()
    {
        _source = new AnonymousMapping(Bytes);
        _destination = new AnonymousMapping(Bytes);
        var random = new Random(1);
        for (ulong block = 0; block < Bytes / BlockBytes; block += 2)
        {
            random.NextBytes(Span(_source, block * BlockBytes, (int)BlockBytes));
        }

        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        _sourceSocket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        _sourceSocket.Connect(listener.LocalEndPoint!);
        _destinationSocket = listener.Accept();
        _destinationSocket.NoDelay = true;
        _sourcePlain = new NetworkStream(_sourceSocket, ownsSocket: false);
        _destinationPlain = new NetworkStream(_destinationSocket, ownsSocket: false);

        // A second connection for TLS: the handshake's keys are made here, pinned on both sides (no key is kept).
        using var tlsListener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        tlsListener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        tlsListener.Listen(1);
        var tlsSource = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        tlsSource.Connect(tlsListener.LocalEndPoint!);
        Socket tlsDestination = tlsListener.Accept();
        _sourceCertificate = SelfSigned("CN=source-1");
        _destinationCertificate = SelfSigned("CN=destination");
        (_sourceTls, _destinationTls) = Secure(tlsSource, tlsDestination);
    }

    /// <summary>Fresh connections for the runs over data connections (a control connection and 4 data connections, plain and TLS): a session disposes those it used.</summary>
    [IterationSetup(Targets = [nameof(PageStreamPlain2Connections), nameof(PageStreamPlain4Connections), nameof(PageStreamTls2Connections), nameof(PageStreamTls4Connections)])]
    public void ConnectionsSetup()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        for (int i = 0; i < 5; i++)
        {
            (Socket source, Socket destination) = Pair(listener);
            _plainPairs.Add((new NetworkStream(source, ownsSocket: true), new NetworkStream(destination, ownsSocket: true)));
            (source, destination) = Pair(listener);
            _tlsPairs.Add(Secure(source, destination));
        }
    }

    [IterationCleanup(Targets = [nameof(PageStreamPlain2Connections), nameof(PageStreamPlain4Connections), nameof(PageStreamTls2Connections), nameof(PageStreamTls4Connections)])]
    public void ConnectionsCleanup()
    {
        foreach ((Stream source, Stream destination) in (System.Collections.Generic.List<(Stream, Stream)>)[.. _plainPairs, .. _tlsPairs])
        {
            source.Dispose();
            destination.Dispose();
        }

        _plainPairs.Clear();
        _tlsPairs.Clear();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sourceTls.Dispose();
        _destinationTls.Dispose();
        _sourcePlain.Dispose();
        _destinationPlain.Dispose();
        _sourceSocket.Dispose();
        _destinationSocket.Dispose();
        _source.Dispose();
        _destination.Dispose();
    }

    /// <summary>The memory's limit: the whole GiB copied, no socket.</summary>
    [Benchmark(Baseline = true)]
    public unsafe ulong Memcpy()
    {
        Buffer.MemoryCopy((void*)_source.Address, (void*)_destination.Address, Bytes, Bytes);
        return Bytes;
    }

    /// <summary>The socket's limit: the data pages' bytes written and read into place, nothing else.</summary>
    [Benchmark]
    public ulong RawSocket()
    {
        Task sent = Task.Run(() =>
        {
            for (ulong block = 0; block < Bytes / BlockBytes; block += 2)
            {
                _sourcePlain.Write(Span(_source, block * BlockBytes, (int)BlockBytes));
            }
        });
        for (ulong block = 0; block < Bytes / BlockBytes; block += 2)
        {
            _destinationPlain.ReadExactly(Span(_destination, block * BlockBytes, (int)BlockBytes));
        }

        sent.GetAwaiter().GetResult();
        return Bytes / 2;
    }

    /// <summary>The page stream, one connection in the clear: records, checksums, zero pages as counts, applied.</summary>
    [Benchmark]
    public ulong PageStreamPlain() => Migrate(_sourcePlain, _destinationPlain);

    /// <summary>
    /// The same to a destination that declares its memory fresh (<see cref="PageStreamReader.MemoryStartsZeroed"/>, as
    /// the sample's does): its zero pages are not read. True here: the zero blocks are never written on either side.
    /// </summary>
    [Benchmark]
    public ulong PageStreamPlainToFreshMemory() => Migrate(_sourcePlain, _destinationPlain, memoryStartsZeroed: true);

    /// <summary>The same over mutual TLS 1.3.</summary>
    [Benchmark]
    public ulong PageStreamTls() => Migrate(_sourceTls, _destinationTls);

    /// <summary>In the clear, a control connection and 2 data connections.</summary>
    [Benchmark]
    public ulong PageStreamPlain2Connections() => MigrateOverDataConnections(_plainPairs, 2);

    /// <summary>In the clear, a control connection and 4 data connections.</summary>
    [Benchmark]
    public ulong PageStreamPlain4Connections() => MigrateOverDataConnections(_plainPairs, 4);

    /// <summary>Mutual TLS 1.3 on every connection, 2 data connections.</summary>
    [Benchmark]
    public ulong PageStreamTls2Connections() => MigrateOverDataConnections(_tlsPairs, 2);

    /// <summary>Mutual TLS 1.3 on every connection, 4 data connections.</summary>
    [Benchmark]
    public ulong PageStreamTls4Connections() => MigrateOverDataConnections(_tlsPairs, 4);

    /// <summary>
    /// The stream as a migration session runs it over data connections: the header and its acceptance (with the
    /// grant and token), each data connection's header, the round over them, and the end.
    /// </summary>
    private ulong MigrateOverDataConnections(System.Collections.Generic.List<(Stream Source, Stream Destination)> pairs, int connections)
    {
        (Stream control, Stream controlEnd) = pairs[0];
        var accepting = new System.Collections.Concurrent.ConcurrentQueue<Stream>(pairs.GetRange(1, connections).ConvertAll(p => p.Destination));
        Task sent = Task.Run(async () =>
        {
            PipeWriter output = PipeWriter.Create(control, new StreamPipeWriterOptions(minimumBufferSize: PageStreamWriter.RecommendedBufferSize, leaveOpen: true));
            var acks = new PageStreamAcknowledgements(PipeReader.Create(control, new StreamPipeReaderOptions(leaveOpen: true)));
            Task reading = acks.RunAsync(CancellationToken.None);
            var writer = new PageStreamWriter(output, View(_source)) { RequestedDataConnections = connections };
            await writer.WriteHeaderAsync(CancellationToken.None);
            await acks.WaitForAcceptanceAsync(CancellationToken.None);
            var outputs = new System.Collections.Generic.List<PipeWriter>();
            for (int i = 0; i < acks.GrantedDataConnections; i++)
            {
                outputs.Add(PipeWriter.Create(pairs[1 + i].Source, new StreamPipeWriterOptions(minimumBufferSize: PageStreamWriter.RecommendedBufferSize, leaveOpen: true)));
                await writer.AddDataConnectionAsync(outputs[^1], acks.GrantedDataConnections, acks.DataConnectionToken, CancellationToken.None);
            }

            await writer.WriteRoundAsync([new DirtyRun(0, Bytes / 4096)], CancellationToken.None);
            await writer.WriteEndAsync(CancellationToken.None);
            await acks.WaitForEndAsync(CancellationToken.None);
            foreach (PipeWriter data in outputs)
            {
                await data.CompleteAsync();
            }

            await output.CompleteAsync();
            _ = reading;
        });
        PipeReader input = PipeReader.Create(controlEnd, new StreamPipeReaderOptions(bufferSize: PageStreamWriter.RecommendedBufferSize, leaveOpen: true));
        PipeWriter acknowledgements = PipeWriter.Create(controlEnd, new StreamPipeWriterOptions(leaveOpen: true));
        var reader = new PageStreamReader(input, View(_destination))
        {
            Acknowledgements = acknowledgements,
            AcknowledgeHeader = true,
            MaxDataConnections = connections,
            AcceptDataConnection = _ => ValueTask.FromResult(accepting.TryDequeue(out Stream? next) ? next : throw new InvalidOperationException("no data connection left")),
        };
        PageStreamSummary summary = reader.ReadToEndAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        reader.CloseDataConnectionsAsync().AsTask().GetAwaiter().GetResult();
        sent.GetAwaiter().GetResult();
        input.Complete();
        acknowledgements.Complete();
        if (summary.DataPages + summary.ZeroPages != Bytes / 4096)
        {
            throw new InvalidOperationException($"{summary.DataPages + summary.ZeroPages} pages arrived, not {Bytes / 4096}");
        }

        return summary.DataPages + summary.ZeroPages;
    }

    private static (Socket Source, Socket Destination) Pair(Socket listener)
    {
        var source = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        source.Connect(listener.LocalEndPoint!);
        Socket destination = listener.Accept();
        destination.NoDelay = true;
        return (source, destination);
    }

    /// <summary>Mutual TLS over a connected pair, each side pinning the other's key (made at setup: no key is kept); disposing a stream closes its socket.</summary>
    private (Stream Source, Stream Destination) Secure(Socket source, Socket destination)
    {
        var sourceConnection = new NetworkStream(source, ownsSocket: true);
        var destinationConnection = new NetworkStream(destination, ownsSocket: true);
        Task<SslStream> accepted = MigrationTls.AcceptAsync(destinationConnection, new MigrationTlsOptions
        {
            Certificate = _destinationCertificate,
            AllowedPins = [MigrationTls.PinOf(_sourceCertificate)],
        });
        Task<SslStream> connected = MigrationTls.ConnectAsync(sourceConnection, new MigrationTlsOptions
        {
            Certificate = _sourceCertificate,
            AllowedPins = [MigrationTls.PinOf(_destinationCertificate)],
        });
        Task.WaitAll(accepted, connected);
        return (new OwningStream(connected.Result, sourceConnection), new OwningStream(accepted.Result, destinationConnection));
    }

    private ulong Migrate(Stream source, Stream destination, bool memoryStartsZeroed = false)
    {
        Task sent = Task.Run(async () =>
        {
            PipeWriter output = PipeWriter.Create(source, new StreamPipeWriterOptions(minimumBufferSize: PageStreamWriter.RecommendedBufferSize, leaveOpen: true));
            var writer = new PageStreamWriter(output, View(_source));
            await writer.WriteRoundAsync([new DirtyRun(0, Bytes / 4096)], CancellationToken.None);
            await writer.WriteEndAsync(CancellationToken.None);
            await output.CompleteAsync();
        });
        PipeReader input = PipeReader.Create(destination, new StreamPipeReaderOptions(bufferSize: PageStreamWriter.RecommendedBufferSize, leaveOpen: true));
        PageStreamSummary summary = new PageStreamReader(input, View(_destination)) { MemoryStartsZeroed = memoryStartsZeroed }.ReadToEndAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        input.Complete();
        sent.GetAwaiter().GetResult();
        return summary.DataPages + summary.ZeroPages;
    }

    private static X509Certificate2 SelfSigned(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));

        // A certificate with its key as SslStream on Linux wants it: exported and imported once.
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
    }

    private static GuestMemoryView View(AnonymousMapping mapping) => new(mapping.Address, mapping.Length);

    private static unsafe Span<byte> Span(AnonymousMapping mapping, ulong offset, int length) => new((byte*)mapping.Address + offset, length);
}
