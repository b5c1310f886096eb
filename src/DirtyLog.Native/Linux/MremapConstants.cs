// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native.Linux;

/// <summary>Flags of <c>mremap</c>, named as in <c>linux/mman.h</c>.</summary>
[UapiConstants("linux/mman.h")]
internal static class MremapConstants
{
    /// <summary>The kernel may move the mapping to another address (and picks it).</summary>
    public const int MREMAP_MAYMOVE = 1;

    /// <summary>Linux 5.7 and later: the old range stays mapped, empty, with its flags (a userfaultfd registration among them).</summary>
    public const int MREMAP_DONTUNMAP = 4;
}
