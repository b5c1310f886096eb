// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.IO;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;
using DirtyLog.Tracking;
using NUnit.Framework;

namespace DirtyLog.Tests.Memory;

/// <summary>
/// A region removed while the page stream copies it: once <see cref="GuestMemoryMap.Remove"/> returned, the VMM may
/// unmap it or hand it to someone else, so no copy may read it after. Judged from the stream's bytes: the test fills
/// the removed memory with a poison pattern the moment Remove returns, and no poison may reach the stream.
/// </summary>
[TestFixture]
[Category("Concurrency")]
public class GuestMemoryMapRemovalStressTests
{
    private const ulong MiB = 1UL << 20;
    private const byte Poison = 0xEE;
    private const int PoisonRun = 64; // random page data holds no 64 equal bytes in a row

    [Test]
    public async Task NoByteOfARegionIsCopiedAfterItsRemovalReturned([Values(20261206, 20261207, 20261208)] int seed)
    {
        const int Trials = 12;
        var random = new Random(seed);
        for (int trial = 0; trial < Trials; trial++)
        {
            using var backing = new AnonymousMapping(4 * MiB);
            FillRandom(backing, 4 * MiB, random);
            var kept = new HostMemoryRegion(backing.Address, 0, 2 * MiB);
            var removed = new HostMemoryRegion(backing.Address + (nint)(2 * MiB), 2 * MiB, 2 * MiB);
            var map = new GuestMemoryMap([kept, removed]);
            var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
            var writer = new PageStreamWriter(pipe.Writer, map);
            using var start = new Barrier(2);
            int spins = random.Next(0, 200_000); // where in the rounds the removal lands: seeded, not timed
            int removedFlag = 0;

            Task rounds = Task.Run(async () =>
            {
                start.SignalAndWait();
                try
                {
                    // Rounds over every page, before and after the removal: at least two after it was seen.
                    for (int after = 0; after < 2;)
                    {
                        await writer.WriteRoundAsync(new DirtyRun[] { new(0, 1024) }, CancellationToken.None);
                        after += Volatile.Read(ref removedFlag);
                    }

                    await writer.WriteEndAsync(CancellationToken.None);
                    await pipe.Writer.CompleteAsync();
                }
                catch (Exception e)
                {
                    await pipe.Writer.CompleteAsync(e); // the reader fails with it rather than wait for ever
                    throw;
                }
            });
            var remover = new Thread(() =>
            {
                start.SignalAndWait();
                Thread.SpinWait(spins);
                map.Remove(removed.GuestAddress);
                Poisoned(removed).Fill(Poison); // unmapped and reused, as far as any copy can tell
                Volatile.Write(ref removedFlag, 1);
            });
            remover.Start();
            byte[] stream;
            try
            {
                stream = await ReadAllAsync(pipe.Reader);
                await rounds;
            }
            finally
            {
                remover.Join(); // it writes the mapping: not once it is unmapped
            }

            Assert.That(PoisonAt(stream), Is.EqualTo(-1), $"trial {trial} (spins {spins}): a copy read the region after its removal returned");
            Assert.That(stream.Length, Is.GreaterThan(2 * (int)MiB));
        }
    }

    [Test]
    public void TheJudgeFindsPoisonInACopyThatHeldNoLease()
    {
        // The broken variant: a copier that took its span before the removal and read it after.
        using var backing = new AnonymousMapping(4 * MiB);
        FillRandom(backing, 4 * MiB, new Random(1));
        var region = new HostMemoryRegion(backing.Address, 0, 4 * MiB);
        var map = new GuestMemoryMap([region]);
        Span<byte> held = map.Slice(MiB, 4096);
        map.Remove(0);
        Poisoned(region).Fill(Poison);
        byte[] copy = held.ToArray();

        Assert.That(PoisonAt(copy), Is.Zero);
    }

    [Test]
    public void ARemovalWaitsForTheCopyInsideTheRegion([Values(1, 2, 3, 4)] int seed)
    {
        var random = new Random(seed);
        using var backing = new AnonymousMapping(MiB);
        var region = new HostMemoryRegion(backing.Address, 0, MiB);
        for (int trial = 0; trial < 50; trial++)
        {
            var map = new GuestMemoryMap([region]);
            using var entered = new ManualResetEventSlim();
            using var removing = new ManualResetEventSlim();
            long clock = 0, exitedAt = 0, removedAt = 0;
            int spins = random.Next(1_000, 100_000);
            var copier = new Thread(() =>
            {
                GuestMemoryMap.Snapshot lease = map.Enter();
                entered.Set();
                removing.Wait();
                Thread.SpinWait(spins); // the copy goes on while the remover is on its way in
                exitedAt = Interlocked.Increment(ref clock);
                GuestMemoryMap.Exit(lease);
            });
            var remover = new Thread(() =>
            {
                entered.Wait();
                removing.Set();
                map.Remove(0);
                removedAt = Interlocked.Increment(ref clock);
            });
            copier.Start();
            remover.Start();
            copier.Join();
            remover.Join();

            Assert.That(exitedAt, Is.LessThan(removedAt), $"trial {trial}: Remove returned while a copy held the region");
        }
    }

    private static unsafe Span<byte> Poisoned(HostMemoryRegion region) => new((byte*)region.HostAddress, (int)region.Length);

    private static unsafe void FillRandom(AnonymousMapping mapping, ulong length, Random random) =>
        random.NextBytes(new Span<byte>((byte*)mapping.Address, (int)length));

    private static int PoisonAt(ReadOnlySpan<byte> bytes)
    {
        int run = 0;
        for (int i = 0; i < bytes.Length; i++)
        {
            run = bytes[i] == Poison ? run + 1 : 0;
            if (run == PoisonRun)
            {
                return i - PoisonRun + 1;
            }
        }

        return -1;
    }

    private static async Task<byte[]> ReadAllAsync(PipeReader reader)
    {
        using var all = new MemoryStream();
        while (true)
        {
            ReadResult result = await reader.ReadAsync();
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                all.Write(segment.Span);
            }

            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                await reader.CompleteAsync();
                return all.ToArray();
            }
        }
    }
}
