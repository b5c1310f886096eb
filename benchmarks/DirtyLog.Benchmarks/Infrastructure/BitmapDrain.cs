// Licensed under the MIT License. See LICENSE in the repository root.

using DirtyLog.Bitmaps;

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>Empties a shared bitmap between iterations, so that every measured merge lands on a clean one.</summary>
internal static class BitmapDrain
{
    public static void DiscardAll(this SparseDirtyBitmap bitmap)
    {
        var sink = default(CountingSink);
        bitmap.Harvest(ref sink);
    }
}
