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

/// <summary>What the first full copy carries: a fresh guest is mostly zero pages.</summary>
public enum StreamContent
{
    /// <summary>Every page holds data.</summary>
    AllData,

    /// <summary>A quarter of the pages hold data, the rest are zero (a guest early in its life).</summary>
    QuarterData,

    /// <summary>Every page is zero.</summary>
    AllZero,
}

/// <summary>
/// The destination side of the first full copy of 256 MiB: the page stream read from memory and applied to fresh,
/// never-touched destination memory (as after the destination VMM maps its RAM), against a plain copy of the same data
/// bytes into fresh memory in the same run: the stream's cost above memcpy, faults included.
/// </summary>
[InvocationCount(1)]
public class PageStreamApplyBenchmarks
{
    private const ulong Bytes = 256UL << 20;

    private AnonymousMapping _source = null!;
    private byte[] _stream = [];
    private AnonymousMapping? _destination;
    private ulong _dataBytes;

    /// <summary>What the stream carries.</summary>
    [Params(StreamContent.AllData, StreamContent.QuarterData, StreamContent.AllZero)]
    public StreamContent Content { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _source = new AnonymousMapping(Bytes);
        ulong pages = Bytes / 4096;
        for (ulong page = 0; page < pages; page++)
        {
            bool data = Content == StreamContent.AllData || (Content == StreamContent.QuarterData && page % 4 == 0);
            if (data)
            {
                _source.WriteUInt64(page * 4096, page + 1);
                _source.WriteUInt64((page * 4096) + 4088, ~page);
                _dataBytes += 4096;
            }
        }

        var encoded = new MemoryStream();
        PipeWriter output = PipeWriter.Create(encoded, new StreamPipeWriterOptions(leaveOpen: true));
        var writer = new PageStreamWriter(output, View(_source));
        writer.WriteRoundAsync([new DirtyRun(0, pages)], CancellationToken.None).AsTask().GetAwaiter().GetResult();
        writer.WriteEndAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        output.Complete();
        _stream = encoded.ToArray();
    }

    [IterationSetup]
    public void FreshDestination() => _destination = new AnonymousMapping(Bytes);

    [IterationCleanup]
    public void DropDestination() => _destination?.Dispose();

    [GlobalCleanup]
    public void Cleanup() => _source.Dispose();

    /// <summary>The data bytes copied into fresh memory, page by page where the stream has data.</summary>
    [Benchmark(Baseline = true)]
    public unsafe ulong Memcpy()
    {
        byte* from = (byte*)_source.Address, to = (byte*)_destination!.Address;
        ulong copied = 0;
        for (ulong offset = 0; offset < Bytes && copied < _dataBytes; offset += 4096)
        {
            bool data = Content == StreamContent.AllData || (Content == StreamContent.QuarterData && (offset / 4096) % 4 == 0);
            if (data)
            {
                Buffer.MemoryCopy(from + offset, to + offset, 4096, 4096);
                copied += 4096;
            }
        }

        return copied;
    }

    /// <summary>The stream read, checked and applied.</summary>
    [Benchmark]
    public ulong Apply()
    {
        var reader = new PageStreamReader(PipeReader.Create(new MemoryStream(_stream, writable: false)), View(_destination!));
        PageStreamSummary summary = reader.ReadToEndAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        return summary.DataPages + summary.ZeroPages;
    }

    /// <summary>The same, with the destination declared fresh (<see cref="PageStreamReader.MemoryStartsZeroed"/>): zero pages are not read.</summary>
    [Benchmark]
    public ulong ApplyToMemoryThatStartsZeroed()
    {
        var reader = new PageStreamReader(PipeReader.Create(new MemoryStream(_stream, writable: false)), View(_destination!)) { MemoryStartsZeroed = true };
        PageStreamSummary summary = reader.ReadToEndAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        return summary.DataPages + summary.ZeroPages;
    }

    private static DirtyLog.Memory.GuestMemoryView View(AnonymousMapping mapping) => new(mapping.Address, mapping.Length);
}
