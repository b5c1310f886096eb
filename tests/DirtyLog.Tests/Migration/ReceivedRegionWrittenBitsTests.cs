// Licensed under the MIT License. See LICENSE in the repository root.

using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// The reader's bit per page written (with <see cref="PageStreamReader.MemoryStartsZeroed"/>), set and cleared by data
/// connections at once for neighbouring pages of one word: no bit may be lost, or a zero page keeps stale bytes.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class ReceivedRegionWrittenBitsTests
{
    private const ulong Pages = 1 << 20; // long enough that both run at once, on 2 cores too

    [TestCase(1)]
    [TestCase(2)]
    public void TwoWritersOfNeighbouringPagesLoseNoBit(int seed)
    {
        for (int iteration = 0; iteration < 10; iteration++)
        {
            var region = new PageStreamReader.ReceivedRegion(0, Pages, default(HostMemoryRegion), trackWritten: true);
            using var start = new Barrier(2);
            // One writer takes the even pages, the other the odd ones (single pages), or runs of seed pages in turn.
            Task[] writers = new[] { 0, 1 }.Select(w => Task.Factory.StartNew(() =>
            {
                start.SignalAndWait();
                for (ulong p = (ulong)(w * seed); p < Pages; p += (ulong)(2 * seed))
                {
                    region.MarkWritten(p, (uint)seed);
                }
            }, TaskCreationOptions.LongRunning)).ToArray();
            Task.WaitAll(writers);

            Assert.That(region.Written.All(word => word == ulong.MaxValue), Is.True, $"iteration {iteration}: a page written is not marked");
        }
    }

    [Test]
    public void TwoClearersOfNeighbouringPagesLoseNoClear()
    {
        for (int iteration = 0; iteration < 10; iteration++)
        {
            var region = new PageStreamReader.ReceivedRegion(0, Pages, default(HostMemoryRegion), trackWritten: true);
            region.MarkWritten(0, (uint)Pages);
            using var start = new Barrier(2);
            Task[] clearers = new[] { 0, 1 }.Select(w => Task.Factory.StartNew(() =>
            {
                start.SignalAndWait();
                for (ulong p = (ulong)w; p < Pages; p += 2)
                {
                    region.MarkZero(p);
                }
            }, TaskCreationOptions.LongRunning)).ToArray();
            Task.WaitAll(clearers);

            Assert.That(region.Written.All(word => word == 0), Is.True, $"iteration {iteration}: a page cleared is still marked");
        }
    }
}
