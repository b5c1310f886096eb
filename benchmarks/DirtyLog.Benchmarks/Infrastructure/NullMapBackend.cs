// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Mapping;

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>A map backend with no hardware behind it: what is measured is the correlator alone.</summary>
internal sealed class NullMapBackend : IIoMapBackend
{
    public ulong IovaAlignment => 4096;

    public bool AllowsPartialUnmap => false;

    public void Map(ulong iova, ulong guestAddress, ulong length)
    {
    }

    public void Unmap(ulong iova, ulong length)
    {
    }
}
