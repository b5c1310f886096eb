// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Memory;

namespace DirtyLog.Migration;

/// <summary>
/// Where a chunk's pages are read, as an <see cref="IPageChunkSource"/> hands it over: in <see cref="Memory"/> at the
/// pages' own offsets (guest memory the source holds still), or else back to back in <see cref="Bytes"/>.
/// </summary>
/// <param name="Memory">Memory laid out as the guest's, or <see langword="null"/>.</param>
/// <param name="Bytes">The chunk's pages, when <paramref name="Memory"/> is null.</param>
/// <remarks>Thread safety: an immutable value; what it points to is the source's until the chunk is written.</remarks>
internal readonly record struct PageChunk(GuestMemoryView? Memory, ReadOnlyMemory<byte> Bytes);
