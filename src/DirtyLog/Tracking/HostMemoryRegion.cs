// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Tracking;

/// <summary>Guest memory as this process maps it: <see cref="Length"/> bytes at <see cref="HostAddress"/> backing guest-physical <see cref="GuestAddress"/>.</summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
/// <param name="HostAddress">The page-aligned address in this process.</param>
/// <param name="GuestAddress">The guest-physical address of its first byte.</param>
/// <param name="Length">Bytes, a multiple of 4096.</param>
public readonly record struct HostMemoryRegion(nint HostAddress, ulong GuestAddress, ulong Length);
