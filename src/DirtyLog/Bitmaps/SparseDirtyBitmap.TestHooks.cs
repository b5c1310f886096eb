// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Bitmaps;

/// <summary>Hooks for the test suite only: deliberately broken variants that the tests must catch.</summary>
public sealed partial class SparseDirtyBitmap
{
    /// <summary>A harvest that loses the first non-zero word it takes. The stress test must fail with it.</summary>
    internal HarvestResult HarvestDroppingOneWord<TSink>(ref TSink sink)
        where TSink : IDirtyRunSink, allows ref struct
        => Walk<LossyHarvestWalk, TSink>(0, _rootSpan, ref sink);
}
