// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.Versioning;

namespace DirtyLog.Native;

/// <summary>Every P/Invoke of DirtyLog lives in this class, one native function per file.</summary>
[SupportedOSPlatform("linux")]
internal static partial class Interop
{
    /// <summary>The C library: glibc's libc.so.6, resolved by the runtime's probing of "libc".</summary>
    internal const string Libc = "libc";
}
