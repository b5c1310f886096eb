// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.IO.Pipelines;
using System.Threading;
using BenchmarkDotNet.Attributes;
using DirtyLog.Bitmaps;
using DirtyLog.Migration;
using DirtyLog.Native;

namespace DirtyLog.Benchmarks.Migration;

/// <summary>
/// The source side of the first full copy of 256 MiB: the page stream written (zero-page detection, a copy into the
/// pipe, per-page CRC-32C) into a pipe that discards what it gets, against a plain copy of the same data bytes into a
/// buffer of the same size in the same run: the stream's cost above memcpy.
/// </summary>
public class PageStreamWriteBenchmarks
{
    private const ulong Bytes = 256UL << 20;

    private AnonymousMapping _source = null!;
    private byte[] _sink = [];
    private ulong _dataBytes;

    /// <summary>What the memory holds.</summary>
    [Params(StreamContent.AllData, StreamContent.QuarterData, StreamContent.AllZero)]
    public StreamContent Content { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _source = new AnonymousMapping(Bytes);
        for (ulong page = 0; page < Bytes / 4096; page++)
        {
            if (Content == StreamContent.AllData || (Content == StreamContent.QuarterData && page % 4 == 0))
            {
                _source.WriteUInt64(page * 4096, page + 1);
                _source.WriteUInt64((page * 4096) + 4088, ~page);
                _dataBytes += 4096;
            }
        }

        _sink = new byte[1 << 20];
    }

    [GlobalCleanup]
    public void Cleanup() => _source.Dispose();

    /// <summary>The data bytes copied, a megabyte at a time, into a reused buffer (as the pipe reuses its segments).</summary>
    [Benchmark(Baseline = true)]
    public unsafe ulong Memcpy()
    {
        byte* from = (byte*)_source.Address;
        ulong copied = 0;
        for (ulong offset = 0; offset < Bytes && copied < _dataBytes; offset += 4096)
        {
            if (Content == StreamContent.AllData || (Content == StreamContent.QuarterData && (offset / 4096) % 4 == 0))
            {
                new ReadOnlySpan<byte>(from + offset, 4096).CopyTo(_sink.AsSpan((int)(copied % (1 << 20)), 4096));
                copied += 4096;
            }
        }

        return copied;
    }

    /// <summary>The full copy written as a page stream into a pipe whose reader drops it.</summary>
    [Benchmark]
    public long Write()
    {
        PipeWriter output = PipeWriter.Create(Stream.Null);
        var writer = new PageStreamWriter(output, new DirtyLog.Memory.GuestMemoryView(_source.Address, Bytes));
        return writer.WriteRoundAsync([new DirtyRun(0, Bytes / 4096)], CancellationToken.None).AsTask().GetAwaiter().GetResult();
    }
}
