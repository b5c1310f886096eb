// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Tracking;

namespace DirtyLog.Mapping;

/// <summary>
/// The 1 GiB blocks of IOVA that hold mappings, each with the number of mappings that touch it: what an address
/// space's device trackers are asked to track (a device logs whole blocks, so that small map changes re-plan nothing).
/// </summary>
/// <remarks>Not thread-safe: the owning address space guards it with its write lock.</remarks>
internal sealed class DeviceBlockCounts
{
    /// <summary>Bytes of IOVA per block.</summary>
    public const ulong BlockSize = 1UL << 30;

    private readonly Dictionary<ulong, int> _counts = new();

    /// <summary>Blocks holding at least one mapping.</summary>
    public int Count => _counts.Count;

    /// <summary>The number of mappings touching <paramref name="block"/>.</summary>
    public int this[ulong block] => _counts.GetValueOrDefault(block);

    /// <summary>The blocks [<paramref name="iova"/>, + <paramref name="length"/>) touches, in order.</summary>
    public static IEnumerable<ulong> BlocksOf(ulong iova, ulong length)
    {
        if (length == 0)
        {
            yield break;
        }

        for (ulong b = iova / BlockSize, last = (iova + length - 1) / BlockSize; b <= last; b++)
        {
            yield return b;
            if (b == ulong.MaxValue / BlockSize)
            {
                yield break; // the last block of the 64-bit space: b + 1 would wrap
            }
        }
    }

    /// <summary>Blocks the range touches that hold no mapping yet.</summary>
    public ulong[] NewBlocks(ulong iova, ulong length) => BlocksOf(iova, length).Where(b => !_counts.ContainsKey(b)).ToArray();

    /// <summary>Counts one mapping in every block it touches.</summary>
    public void Add(ulong iova, ulong length)
    {
        foreach (ulong block in BlocksOf(iova, length))
        {
            _counts[block] = _counts.GetValueOrDefault(block) + 1;
        }
    }

    /// <summary>Uncounts one mapping from every block it touches; a block left with none is dropped.</summary>
    /// <exception cref="InvalidOperationException">A block does not count the mapping (the caller's books are wrong).</exception>
    public void Remove(ulong iova, ulong length)
    {
        ulong[] blocks = BlocksOf(iova, length).ToArray();
        if (blocks.Any(b => !_counts.ContainsKey(b)))
        {
            throw new InvalidOperationException($"IOVA 0x{iova:x} + 0x{length:x} is not counted in every block it touches.");
        }

        foreach (ulong block in blocks)
        {
            if (--_counts[block] == 0)
            {
                _counts.Remove(block);
            }
        }
    }

    /// <summary>The blocks holding mappings, with <paramref name="extra"/> blocks, as ranges with neighbours joined, in order.</summary>
    public AddressRange[] Ranges(IEnumerable<ulong>? extra = null)
    {
        var result = new List<AddressRange>();
        foreach (ulong b in (extra is null ? _counts.Keys : _counts.Keys.Concat(extra)).Distinct().Order())
        {
            ulong start = b * BlockSize;
            if (result.Count > 0 && result[^1].End == start)
            {
                result[^1] = new AddressRange(result[^1].Start, result[^1].Length + BlockSize);
            }
            else
            {
                result.Add(new AddressRange(start, BlockSize));
            }
        }

        return [.. result];
    }
}
