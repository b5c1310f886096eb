// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Snapshots;

/// <summary>One link's place in its chain, as its header says.</summary>
/// <param name="Full">A full snapshot (a chain's base) or a diff.</param>
/// <param name="Sequence">Its sequence number: its parent's plus one for a diff.</param>
/// <param name="Chain">The chain's identity, the same in every link.</param>
/// <param name="Link">The link's own identity.</param>
/// <param name="Parent">The identity of the link a diff applies on; empty for a full snapshot.</param>
/// <remarks>Thread safety: an immutable value.</remarks>
internal readonly record struct SnapshotLink(bool Full, long Sequence, Guid Chain, Guid Link, Guid Parent);
