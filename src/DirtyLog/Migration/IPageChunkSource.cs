// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration;

/// <summary>
/// Where a <see cref="PageStreamWriter"/> reads a round's pages when they are not read from guest memory as it is:
/// before each chunk the source hands over where the chunk's pages are, valid until the writer says the chunk was
/// written. A chunk is at most one data record's pages, inside one run.
/// </summary>
/// <remarks>Thread safety: called by the writer's one thread, a chunk at a time, in page order within a run.</remarks>
internal interface IPageChunkSource
{
    /// <summary>The chunk's pages as they must be sent: <paramref name="pageCount"/> pages from <paramref name="firstPage"/>.</summary>
    PageChunk ReadChunk(ulong firstPage, ulong pageCount);

    /// <summary>The chunk's pages were copied into the stream (the source may let them change now).</summary>
    void ChunkWritten(ulong firstPage, ulong pageCount);
}
