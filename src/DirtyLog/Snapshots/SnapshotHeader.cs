// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;

namespace DirtyLog.Snapshots;

/// <summary>
/// What makes a page stream a link of a snapshot chain: a state record named <see cref="StateName"/>, the stream's
/// first record, with the link's kind (full or diff), its sequence number, the chain's identity, its own and its
/// parent's. Diffs follow their parent's sequence number by one and name it; a compacted full snapshot takes the
/// identity of the last link it stands for, so the diffs written after that link follow it.
/// </summary>
/// <remarks>
/// Layout (57 bytes, little-endian): kind (1 full, 2 diff), sequence (8), chain id (16), link id (16), parent link id
/// (16, zero for a full snapshot).
/// </remarks>
internal static class SnapshotHeader
{
    /// <summary>The reserved state name.</summary>
    public const string StateName = "dirtylog.snapshot";

    private const byte Full = 1, Diff = 2;
    private const int Bytes = 1 + 8 + 16 + 16 + 16;

    public static byte[] Encode(SnapshotLink link)
    {
        var bytes = new byte[Bytes];
        bytes[0] = link.Full ? Full : Diff;
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(1), link.Sequence);
        link.Chain.TryWriteBytes(bytes.AsSpan(9));
        link.Link.TryWriteBytes(bytes.AsSpan(25));
        link.Parent.TryWriteBytes(bytes.AsSpan(41));
        return bytes;
    }

    /// <summary>Reads the link's header from a restored stream's states.</summary>
    /// <exception cref="InvalidDataException">The stream carries no snapshot state, or a malformed one.</exception>
    public static SnapshotLink Decode(IReadOnlyDictionary<string, ReadOnlyMemory<byte>> states, int index)
    {
        if (!states.TryGetValue(StateName, out ReadOnlyMemory<byte> value))
        {
            throw new InvalidDataException($"Link {index} of the chain is a page stream but not a snapshot (no \"{StateName}\" state).");
        }

        ReadOnlySpan<byte> bytes = value.Span;
        if (bytes.Length != Bytes || (bytes[0] != Full && bytes[0] != Diff))
        {
            throw new InvalidDataException($"Link {index} of the chain has a malformed \"{StateName}\" state ({bytes.Length} bytes; {Bytes} expected).");
        }

        bool full = bytes[0] == Full;
        var link = new SnapshotLink(full, BinaryPrimitives.ReadInt64LittleEndian(bytes[1..]), new Guid(bytes.Slice(9, 16)), new Guid(bytes.Slice(25, 16)), new Guid(bytes.Slice(41, 16)));
        if (link.Chain == Guid.Empty || link.Link == Guid.Empty || (full != (link.Parent == Guid.Empty)) || link.Sequence < 0)
        {
            throw new InvalidDataException($"Link {index} of the chain has a malformed \"{StateName}\" state (identities or sequence out of range).");
        }

        return link;
    }
}
