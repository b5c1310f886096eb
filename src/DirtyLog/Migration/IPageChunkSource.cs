// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration;

/// <summary>
/// Where a <see cref="PageStreamWriter"/> reads a round's pages when they are not read from guest memory as it is:
/// before each chunk the source hands over the chunk's pages, contiguous, in a buffer that stays valid until the next
/// chunk is asked for. A chunk is at most one data record's pages, inside one run.
/// </summary>
/// <remarks>Thread safety: called by the writer's one thread, a chunk at a time, in page order within a run.</remarks>
internal interface IPageChunkSource
{
    /// <summary>The chunk's pages as they must be sent: <paramref name="pageCount"/> pages from <paramref name="firstPage"/>, back to back.</summary>
    ReadOnlyMemory<byte> ReadChunk(ulong firstPage, ulong pageCount);
}
