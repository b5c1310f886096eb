// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Bitmaps;

/// <summary>Whether a walk of the bitmap clears what it returns. The JIT specialises each walk per mode.</summary>
internal interface IWalkMode
{
    static abstract bool Clears { get; }
}

/// <summary>Read and clear: summary bits and words are taken with atomic exchanges.</summary>
internal readonly struct HarvestWalk : IWalkMode
{
    public static bool Clears => true;
}

/// <summary>Read only: nothing is written.</summary>
internal readonly struct PeekWalk : IWalkMode
{
    public static bool Clears => false;
}
