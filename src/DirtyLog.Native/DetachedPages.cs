// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.Versioning;
using DirtyLog.Native.Internal;

namespace DirtyLog.Native;

/// <summary>
/// Pages moved out of a range by <see cref="UserfaultfdContext.DetachPages"/>, now in a mapping of their own:
/// disposing it frees them. Freeing pages costs what <c>MADV_DONTNEED</c> would (about a tenth of a microsecond a
/// page); detached, that cost moves to wherever the owner disposes them, off a critical path.
/// </summary>
/// <remarks>Thread safety: <see cref="Dispose"/> from any one thread; nothing else reads or writes these pages.</remarks>
[SupportedOSPlatform("linux")]
public sealed class DetachedPages : IDisposable
{
    private readonly MemoryMappingHandle _mapping;

    internal DetachedPages(MemoryMappingHandle mapping) => _mapping = mapping;

    /// <summary>Bytes detached.</summary>
    public ulong Length => _mapping.Length;

    /// <summary>Frees the pages (unmaps their mapping); calling it again does nothing.</summary>
    public void Dispose() => _mapping.Dispose();
}
