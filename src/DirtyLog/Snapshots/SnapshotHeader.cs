// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;

namespace DirtyLog.Snapshots;

/// <summary>
/// What makes a page stream a link of a snapshot chain: a state record named <see cref="StateName"/> with its kind
/// (full or diff) and its sequence number. Diffs follow their predecessor's sequence number by one.
/// </summary>
internal static class SnapshotHeader
{
    /// <summary>The reserved state name.</summary>
    public const string StateName = "dirtylog.snapshot";

    private const byte Full = 1, Diff = 2;

    public static byte[] Encode(bool full, long sequence)
    {
        var bytes = new byte[9];
        bytes[0] = full ? Full : Diff;
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(1), sequence);
        return bytes;
    }

    /// <summary>Reads the link's kind and sequence from a restored stream's states.</summary>
    /// <exception cref="InvalidDataException">The stream carries no snapshot state, or a malformed one.</exception>
    public static (bool Full, long Sequence) Decode(IReadOnlyDictionary<string, ReadOnlyMemory<byte>> states, int index)
    {
        if (!states.TryGetValue(StateName, out ReadOnlyMemory<byte> value))
        {
            throw new InvalidDataException($"Link {index} of the chain is a page stream but not a snapshot (no \"{StateName}\" state).");
        }

        ReadOnlySpan<byte> bytes = value.Span;
        if (bytes.Length != 9 || (bytes[0] != Full && bytes[0] != Diff))
        {
            throw new InvalidDataException($"Link {index} of the chain has a malformed \"{StateName}\" state ({bytes.Length} bytes).");
        }

        return (bytes[0] == Full, BinaryPrimitives.ReadInt64LittleEndian(bytes[1..]));
    }
}
