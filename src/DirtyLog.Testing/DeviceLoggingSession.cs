// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Bitmaps;
using DirtyLog.Tracking;

namespace DirtyLog.Testing;

/// <summary>One START..STOP of an emulated device's DMA log: the ranges, the granted granule, and the log itself.</summary>
internal sealed class DeviceLoggingSession
{
    public DeviceLoggingSession(AddressRange[] ranges, ulong granule)
    {
        Ranges = ranges;
        Granule = granule;
        Log = new SparseDirtyBitmap(64, (long)granule);
    }

    public AddressRange[] Ranges { get; }

    public ulong Granule { get; }

    /// <summary>The device's log, one bit per granule of IOVA; DMA marks it without a lock, REPORT harvests it.</summary>
    public SparseDirtyBitmap Log { get; }

    public bool Tracks(ulong iova)
    {
        foreach (AddressRange r in Ranges)
        {
            if (iova >= r.Start && iova - r.Start < r.Length)
            {
                return true;
            }
        }

        return false;
    }
}
