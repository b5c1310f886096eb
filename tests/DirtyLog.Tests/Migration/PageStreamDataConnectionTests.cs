// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.IO;
using System.IO.Pipelines;
using System.Linq;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// The reader's side of data connections, with streams written by hand as a hostile or a racing source could send
/// them: the order in which rounds apply whatever order the bytes arrive in, and every record out of its place.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class PageStreamDataConnectionTests
{
    private const int Pages = 16;

    [Test]
    public async Task ALaterCopyOnAnotherConnectionWinsEvenWhenItArrivesFirst()
    {
        byte[] older = Enumerable.Repeat((byte)0xAA, 4096).ToArray();
        byte[] newer = Enumerable.Repeat((byte)0xBB, 4096).ToArray();
        byte[] control = Control().RoundBegin(1).RoundEnd(1).RoundBegin(2).RoundEnd(2).End(2).ToArray();
        await using var rig = new Rig(control, connections: 2);
        ulong token = await rig.AcceptedAsync();

        // Connection 0 holds round 2's copy of page 5, all of it there at once; connection 1 holds round 1's, not sent yet.
        rig.Connect(new MemoryStream(HandMadeStream.DataConnection(0, 2, token).RoundEnd(1).Data(5, newer).RoundEnd(2).End(1).ToArray()));
        var late = new Pipe();
        rig.Connect(late.Reader.AsStream());

        // While round 1 is not applied on every connection, round 2 may not begin: connection 0 holds its page back.
        bool appliedEarly = false;
        for (int i = 0; i < 60 && !appliedEarly; i++)
        {
            await Task.Delay(5);
            appliedEarly = rig.Page(5)[0] == 0xBB;
        }

        await late.Writer.WriteAsync(HandMadeStream.DataConnection(1, 2, token).Data(5, older).RoundEnd(1).RoundEnd(2).End(1).ToArray());
        await late.Writer.CompleteAsync();
        PageStreamSummary summary = await rig.ReadAsync();

        Assert.Multiple(() =>
        {
            Assert.That(appliedEarly, Is.False, "round 2's page was applied before round 1 was applied on every connection");
            Assert.That(rig.Page(5).ToArray(), Is.EqualTo(newer), "the later round's copy is the one in memory");
            Assert.That(summary.Rounds, Is.EqualTo(2));
            Assert.That(summary.DataPages, Is.EqualTo(2));
        });
    }

    [TestCase("page on control", "a page record on the control connection")]
    [TestCase("region inside a round", "inside round 1")]
    [TestCase("page outside the regions", "data connection 0: a data record for pages 500+1 beyond the regions")]
    [TestCase("wrong end count", "data connection 1: end marker counts 7 pages")]
    [TestCase("region record on a data connection", "data connection 0: record kind 7 on a data connection")]
    [TestCase("round end before its begin", "the end of round 1 before its begin")]
    [TestCase("pages after the end", "data connection 0: record kind 1 where the end record was expected")]
    public async Task ARecordOutOfItsPlaceFailsTheStreamBeforeItsPagesAreWritten(string fault, string expected)
    {
        byte[] page = Enumerable.Repeat((byte)0x5A, 4096).ToArray();
        HandMadeStream control = Control();
        control = fault switch
        {
            "page on control" => control.RoundBegin(1).Data(3, page),
            "region inside a round" => control.RoundBegin(1).Added(100, 4),
            "round end before its begin" => control.RoundEnd(1),
            _ => control.RoundBegin(1).RoundEnd(1).End(0),
        };

        await using var rig = new Rig(control.ToArray(), connections: 2);
        ulong token = await rig.AcceptedAsync();
        HandMadeStream first = HandMadeStream.DataConnection(0, 2, token);
        HandMadeStream second = HandMadeStream.DataConnection(1, 2, token).RoundEnd(1);
        first = fault switch
        {
            "page outside the regions" => first.Data(500, page),
            "region record on a data connection" => first.Added(100, 4),
            "pages after the end" => first.RoundEnd(1).Data(3, page),
            _ => first.RoundEnd(1).End(0),
        };
        second = fault == "wrong end count" ? second.End(7) : second.End(0);
        rig.Connect(new MemoryStream(first.ToArray()));
        rig.Connect(new MemoryStream(second.ToArray()));

        PageStreamException? error = Assert.ThrowsAsync<PageStreamException>(async () => await rig.ReadAsync());
        Assert.Multiple(() =>
        {
            Assert.That(error!.Message, Does.Contain(expected));
            Assert.That(rig.Page(3).ToArray().All(b => b == 0), Is.True, "the page was not written");
        });
    }

    /// <summary>
    /// Two connections write neighbouring pages of the same 64-page words at once in round 1, and zero them in round 2:
    /// with <see cref="PageStreamReader.MemoryStartsZeroed"/> the reader's bit per written page must count every one, or
    /// a zero page it believes fresh keeps round 1's bytes (a bit set without an atomic operation is lost).
    /// </summary>
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public async Task PagesWrittenAtOnceByTwoConnectionsInOneWordAreAllClearedLater(int seed)
    {
        const int pages = 4096;
        var random = new Random(seed);
        byte[] control = new HandMadeStream(pages, PageStreamFormat.VersionWithDataConnections, dataConnections: 2).Added(0, pages)
            .RoundBegin(1).RoundEnd(1).RoundBegin(2).RoundEnd(2).End(2 * pages).ToArray();
        await using var rig = new Rig(control, connections: 2, pages, memoryStartsZeroed: true);
        ulong token = await rig.AcceptedAsync();
        HandMadeStream even = HandMadeStream.DataConnection(0, 2, token), odd = HandMadeStream.DataConnection(1, 2, token);
        byte[] page = new byte[4096];
        for (ulong p = 0; p < pages; p++)
        {
            random.NextBytes(page);
            page[0] |= 1; // never a zero page
            (p % 2 == 0 ? even : odd).Data(p, page);
        }

        even.RoundEnd(1).Zeros(0, pages / 2).RoundEnd(2).End(pages / 2 + pages / 2);
        odd.RoundEnd(1).Zeros(pages / 2, pages / 2).RoundEnd(2).End(pages / 2 + pages / 2);
        rig.Connect(new MemoryStream(even.ToArray()));
        rig.Connect(new MemoryStream(odd.ToArray()));
        await rig.ReadAsync();

        var left = Enumerable.Range(0, pages).Where(p => rig.Page((ulong)p).IndexOfAnyExcept((byte)0) >= 0).ToList();
        Assert.That(left, Is.Empty, $"pages round 2 zeroed that kept round 1's bytes: {string.Join(", ", left.Take(10))}");
    }

    [Test]
    public void AStreamThatAsksForMoreThan64DataConnectionsIsRefusedAtItsHeader()
    {
        byte[] control = new HandMadeStream(Pages, PageStreamFormat.VersionWithDataConnections, dataConnections: 65).Added(0, Pages).ToArray();
        using var mapping = new AnonymousMapping(Pages * 4096);
        var reader = new PageStreamReader(PipeReader.Create(new MemoryStream(control)), new GuestMemoryView(mapping.Address, Pages * 4096));
        Assert.That(async () => await reader.ReadToEndAsync(CancellationToken.None),
            Throws.InstanceOf<PageStreamException>().With.Message.Contains("asks for 65 data connections"));
    }

    [Test]
    public void ARoundBeginOnAStreamWithoutDataConnectionsIsRefused()
    {
        byte[] control = new HandMadeStream(Pages).Added(0, Pages).RoundBegin(1).ToArray();
        using var mapping = new AnonymousMapping(Pages * 4096);
        var reader = new PageStreamReader(PipeReader.Create(new MemoryStream(control)), new GuestMemoryView(mapping.Address, Pages * 4096));
        Assert.That(async () => await reader.ReadToEndAsync(CancellationToken.None),
            Throws.InstanceOf<PageStreamException>().With.Message.Contains("a round-begin record on a stream without data connections"));
    }

    private static HandMadeStream Control() => new HandMadeStream(Pages, PageStreamFormat.VersionWithDataConnections, dataConnections: 2).Added(0, Pages);

    /// <summary>A reader that grants data connections, its control stream given whole, its data connections given by the test.</summary>
    private sealed class Rig : IAsyncDisposable
    {
        private readonly AnonymousMapping _mapping;
        private readonly Pipe _acknowledgements = new();
        private readonly Channel<Stream> _connections = Channel.CreateUnbounded<Stream>();
        private readonly PageStreamReader _reader;
        private readonly Task<PageStreamSummary> _read;

        public Rig(byte[] control, int connections, ulong pages = Pages, bool memoryStartsZeroed = false)
        {
            _mapping = new AnonymousMapping(pages * 4096);
            Memory = new GuestMemoryView(_mapping.Address, pages * 4096);
            _reader = new PageStreamReader(PipeReader.Create(new MemoryStream(control)), Memory)
            {
                MemoryStartsZeroed = memoryStartsZeroed,
                Acknowledgements = _acknowledgements.Writer,
                AcknowledgeHeader = true,
                MaxDataConnections = connections,
                AcceptDataConnection = cancellationToken => _connections.Reader.ReadAsync(cancellationToken),
                DataConnectionTimeout = TimeSpan.FromSeconds(20),
            };
            _read = Task.Run(async () => await _reader.ReadToEndAsync(CancellationToken.None));
        }

        public GuestMemoryView Memory { get; }

        public Span<byte> Page(ulong page) => Memory.Slice(page * 4096, 4096);

        /// <summary>The header's acceptance: the grant, and the token the data connections must present.</summary>
        public async Task<ulong> AcceptedAsync()
        {
            ReadResult result = await _acknowledgements.Reader.ReadAtLeastAsync(PageStreamFormat.AckBytes).AsTask().WaitAsync(TimeSpan.FromSeconds(20));
            byte[] ack = System.Buffers.BuffersExtensions.ToArray(result.Buffer.Slice(0, PageStreamFormat.AckBytes));
            _acknowledgements.Reader.AdvanceTo(result.Buffer.GetPosition(PageStreamFormat.AckBytes));
            Assert.That(BinaryPrimitives.ReadUInt64LittleEndian(ack.AsSpan(8)), Is.EqualTo(PageStreamFormat.HeaderAccepted));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(ack.AsSpan(4)), Is.EqualTo(2), "both data connections granted");
            return BinaryPrimitives.ReadUInt64LittleEndian(ack.AsSpan(16));
        }

        public void Connect(Stream connection) => _connections.Writer.TryWrite(connection);

        public async Task<PageStreamSummary> ReadAsync()
        {
            try
            {
                return await _read.WaitAsync(TimeSpan.FromSeconds(20));
            }
            finally
            {
                await _reader.CloseDataConnectionsAsync(); // no page is written once the caller looks at memory
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _reader.CloseDataConnectionsAsync();
            _mapping.Dispose();
        }
    }
}
