// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Memory;

namespace DirtyLog.Migration;

/// <summary>
/// Where a <see cref="PageStreamWriter"/> reads a round's pages when they are not read from guest memory as it is:
/// before each chunk the source makes the chunk's pages ready in <see cref="Memory"/>, after it the source may drop
/// them. A chunk is at most one data record's pages, inside one run.
/// </summary>
/// <remarks>Thread safety: called by the writer's one thread, a chunk at a time, in page order within a run.</remarks>
internal interface IPageChunkSource
{
    /// <summary>Memory laid out as the guest's (same size, same offsets), holding each chunk's pages between the two calls.</summary>
    GuestMemoryView Memory { get; }

    /// <summary>The pages are about to be read from <see cref="Memory"/>.</summary>
    void BeforeRead(ulong firstPage, ulong pageCount);

    /// <summary>The pages were read (copied into the pipe's buffer).</summary>
    void AfterRead(ulong firstPage, ulong pageCount);
}
