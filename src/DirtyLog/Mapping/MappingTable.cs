// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using DirtyLog.Tracking;

namespace DirtyLog.Mapping;

/// <summary>
/// Disjoint IOVA mappings sorted by IOVA, in chunks of at most 512: a lookup is two binary searches and an insert or
/// removal moves at most one chunk, so a million mappings cost what a B-tree of height two does.
/// </summary>
/// <remarks>Not thread-safe: its address space guards it with its lock.</remarks>
internal sealed class MappingTable
{
    private const int ChunkCapacity = 512;

    private readonly List<List<IovaMapping>> _chunks = [];
    private readonly List<ulong> _firsts = []; // the IOVA of each chunk's first mapping

    /// <summary>Mappings held.</summary>
    public int Count { get; private set; }

    /// <summary>The mapping that contains <paramref name="iova"/>, if any.</summary>
    public bool TryFind(ulong iova, out IovaMapping mapping)
    {
        (int c, int i) = Floor(iova);
        if (c >= 0 && _chunks[c][i].Contains(iova))
        {
            mapping = _chunks[c][i];
            return true;
        }

        mapping = default;
        return false;
    }

    /// <summary>Adds the mappings that intersect [<paramref name="start"/>, <paramref name="end"/>) to <paramref name="result"/>, in IOVA order.</summary>
    public void CollectOverlapping(ulong start, ulong end, List<IovaMapping> result)
    {
        (int c, int i) = Floor(start);
        if (c < 0)
        {
            if (_chunks.Count == 0)
            {
                return;
            }

            (c, i) = (0, 0);
        }
        else if (_chunks[c][i].End <= start)
        {
            (c, i) = Next(c, i);
        }

        for (; c < _chunks.Count; (c, i) = Next(c, i))
        {
            IovaMapping m = _chunks[c][i];
            if (m.Iova >= end)
            {
                return;
            }

            result.Add(m);
        }
    }

    /// <summary>Whether some mapping intersects [<paramref name="start"/>, <paramref name="end"/>).</summary>
    public bool Overlaps(ulong start, ulong end)
    {
        (int c, int i) = Floor(start);
        if (c >= 0 && _chunks[c][i].End > start)
        {
            return true;
        }

        (c, i) = c < 0 ? (_chunks.Count == 0 ? (0, -1) : (0, 0)) : Next(c, i);
        return i >= 0 && c < _chunks.Count && _chunks[c][i].Iova < end;
    }

    /// <summary>Inserts a mapping the caller checked to overlap none.</summary>
    public void Add(IovaMapping mapping)
    {
        if (_chunks.Count == 0)
        {
            _chunks.Add([mapping]);
            _firsts.Add(mapping.Iova);
            Count++;
            return;
        }

        (int c, int i) = Floor(mapping.Iova);
        if (c < 0)
        {
            (c, i) = (0, -1);
        }

        List<IovaMapping> chunk = _chunks[c];
        chunk.Insert(i + 1, mapping);
        _firsts[c] = chunk[0].Iova;
        Count++;
        if (chunk.Count > ChunkCapacity)
        {
            // Split in halves: the new chunk follows.
            List<IovaMapping> tail = chunk.GetRange(chunk.Count / 2, chunk.Count - (chunk.Count / 2));
            chunk.RemoveRange(chunk.Count / 2, tail.Count);
            _chunks.Insert(c + 1, tail);
            _firsts.Insert(c + 1, tail[0].Iova);
        }
    }

    /// <summary>Removes the mapping that starts at <paramref name="iova"/>.</summary>
    /// <returns>Whether there was one.</returns>
    public bool Remove(ulong iova)
    {
        (int c, int i) = Floor(iova);
        if (c < 0 || _chunks[c][i].Iova != iova)
        {
            return false;
        }

        List<IovaMapping> chunk = _chunks[c];
        chunk.RemoveAt(i);
        Count--;
        if (chunk.Count == 0)
        {
            _chunks.RemoveAt(c);
            _firsts.RemoveAt(c);
        }
        else
        {
            _firsts[c] = chunk[0].Iova;
        }

        return true;
    }

    /// <summary>From the first mapping's start to the last one's end; empty when there is none.</summary>
    public AddressRange Hull() =>
        _chunks.Count == 0 ? default : new AddressRange(_chunks[0][0].Iova, _chunks[^1][^1].End - _chunks[0][0].Iova);

    /// <summary>Every mapping, in IOVA order.</summary>
    public IEnumerable<IovaMapping> All()
    {
        foreach (List<IovaMapping> chunk in _chunks)
        {
            foreach (IovaMapping m in chunk)
            {
                yield return m;
            }
        }
    }

    private (int Chunk, int Index) Next(int c, int i) => i + 1 < _chunks[c].Count ? (c, i + 1) : (c + 1, 0);

    /// <summary>The position of the last mapping that starts at or below <paramref name="iova"/>; chunk -1 when none.</summary>
    private (int Chunk, int Index) Floor(ulong iova)
    {
        int c = UpperBound(_firsts, iova) - 1;
        if (c < 0)
        {
            return (-1, -1);
        }

        List<IovaMapping> chunk = _chunks[c];
        int lo = 0, hi = chunk.Count - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (chunk[mid].Iova <= iova)
            {
                lo = mid;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return (c, lo);
    }

    /// <summary>The index of the first key above <paramref name="value"/>.</summary>
    private static int UpperBound(List<ulong> keys, ulong value)
    {
        int lo = 0, hi = keys.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (keys[mid] <= value)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }
}
