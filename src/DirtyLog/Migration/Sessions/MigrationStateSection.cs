// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Migration.Sessions;

/// <summary>
/// One named, versioned piece of device or vCPU state that travels with memory (QEMU's sections): saved by the
/// source's hooks while paused, loaded by the destination's hooks before it resumes.
/// </summary>
/// <param name="Name">The section's name, unique in a migration: 1 to 255 bytes of UTF-8 (for example <c>vcpu0</c>).</param>
/// <param name="Version">The section's format version, the VMM's own: the destination refuses versions it cannot load.</param>
/// <param name="Data">The section's bytes, at most 16 MiB less 4.</param>
/// <remarks>Thread safety: immutable (the data is the caller's; it must not change until the session sent it). On the wire a section is a state record named <paramref name="Name"/> whose payload is the version (u32, little-endian) and then the data.</remarks>
public sealed record MigrationStateSection(string Name, uint Version, ReadOnlyMemory<byte> Data);
