// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.Threading.Tasks;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Testing;
using NUnit.Framework;

namespace DirtyLog.Tests.Migration;

/// <summary>
/// The reader against random and mutated streams, seeded and bounded in time: it either applies a valid stream or
/// throws <see cref="PageStreamException"/>, nothing else, and never writes outside the destination's memory (guard
/// pages around it must stay untouched).
/// </summary>
[TestFixture]
public class PageStreamFuzzTests
{
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public async Task MutatedAndRandomStreamsOnlyEverEndInTheDocumentedException(int seed)
    {
        using var source = new EmulatedGuestMemory(64 * 4096);
        byte[] good = PageStreamTests.ValidStream(source);

        // Destination memory with a guard page on each side, filled with a pattern no stream can produce by chance.
        using var arena = new EmulatedGuestMemory(66 * 4096);
        var random = new Random(seed);
        var clock = Stopwatch.StartNew();
        int cases = 0, accepted = 0;
        while (cases < 4000 && clock.Elapsed < TimeSpan.FromSeconds(20))
        {
            for (ulong a = 0; a < 4096; a += 8)
            {
                arena.WriteUInt64(a, 0xA5A5_5A5A_A5A5_5A5A);
                arena.WriteUInt64((65 * 4096) + a, 0xA5A5_5A5A_A5A5_5A5A);
            }

            byte[] stream = Mutate(good, random);
            var destination = new GuestMemoryView(arena.AsView().Address + 4096, 64 * 4096);
            try
            {
                await PageStreamTests.ReadAsync(stream, destination);
                accepted++;
            }
            catch (PageStreamException)
            {
            }
            catch (Exception e)
            {
                Assert.Fail($"case {cases} (seed {seed}): {e.GetType().Name}: {e.Message}");
            }

            for (ulong a = 0; a < 4096; a += 8)
            {
                Assert.That(arena.ReadUInt64(a) == 0xA5A5_5A5A_A5A5_5A5A && arena.ReadUInt64((65 * 4096) + a) == 0xA5A5_5A5A_A5A5_5A5A, Is.True, $"case {cases}: a guard page was written");
            }

            cases++;
        }

        TestContext.Out.WriteLine($"{cases} streams, {accepted} accepted, in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.That(cases, Is.GreaterThan(500));
    }

    private static byte[] Mutate(byte[] good, Random random)
    {
        switch (random.Next(6))
        {
            case 0: // random bytes, sometimes behind a valid header
                byte[] noise = new byte[random.Next(0, 4096)];
                random.NextBytes(noise);
                if (random.Next(2) == 0 && noise.Length >= 24)
                {
                    good.AsSpan(0, 24).CopyTo(noise);
                }

                return noise;
            case 1: // flip bits
                byte[] flipped = (byte[])good.Clone();
                for (int i = random.Next(1, 8); i > 0; i--)
                {
                    flipped[random.Next(flipped.Length)] ^= (byte)(1 << random.Next(8));
                }

                return flipped;
            case 2: // truncate
                return good[..random.Next(good.Length)];
            case 3: // a slice repeated
                int start = random.Next(good.Length), length = random.Next(1, Math.Min(4096, good.Length - start) + 1);
                return [.. good[..(start + length)], .. good[start..]];
            case 4: // a slice removed
                int cut = random.Next(good.Length), cutLength = random.Next(1, Math.Min(4096, good.Length - cut) + 1);
                return [.. good[..cut], .. good[(cut + cutLength)..]];
            default: // a record header's fields overwritten with extreme values
                byte[] hostile = (byte[])good.Clone();
                int record = 24 + (24 * random.Next(4));
                ulong[] extremes = [0, 1, 63, 64, 255, 256, 257, uint.MaxValue, ulong.MaxValue, ulong.MaxValue / 4096];
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(hostile.AsSpan(record + 8), extremes[random.Next(extremes.Length)]);
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(hostile.AsSpan(record + 4), (uint)extremes[random.Next(extremes.Length)]);
                return hostile;
        }
    }
}
