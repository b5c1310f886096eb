// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking;

/// <summary>
/// What a device's own DMA dirty tracker can do. VFIO does not report these to user space; they come from the
/// device model (mlx5: 42-bit address width, a firmware range limit). Planning against them before START turns a
/// late EOPNOTSUPP into an early, explained refusal.
/// </summary>
/// <remarks>Thread safety: an immutable value; safe to share between threads.</remarks>
public sealed record DeviceDirtyLogLimits
{
    /// <summary>VFIO's own limit on ranges per START (<c>LOG_MAX_RANGES</c> on 4 KiB pages).</summary>
    public const int VfioMaxRanges = 256;

    /// <summary>The most ranges the device tracks; more are folded into fewer by merging the smallest gaps.</summary>
    public int MaxRanges { get; init; } = VfioMaxRanges;

    /// <summary>The highest IOVA bit the device tracks: every tracked byte must lie below 2^<see cref="AddressWidth"/>.</summary>
    public int AddressWidth { get; init; } = 64;

    /// <summary>The smallest page size the device logs at (requests below are raised to it).</summary>
    public long MinPageSize { get; init; } = 4096;

    /// <summary>The largest page size the device logs at.</summary>
    public long MaxPageSize { get; init; } = 1L << 30;

    /// <summary>The mlx5 limits as QEMU knows them: 42-bit addresses; ranges and page sizes as VFIO allows.</summary>
    public static DeviceDirtyLogLimits Mlx5 { get; } = new() { AddressWidth = 42 };

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A limit is out of range.</exception>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRanges, 1, nameof(MaxRanges));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxRanges, VfioMaxRanges, nameof(MaxRanges));
        ArgumentOutOfRangeException.ThrowIfLessThan(AddressWidth, 12, nameof(AddressWidth));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(AddressWidth, 64, nameof(AddressWidth));
        if (MinPageSize < 4096 || (MinPageSize & (MinPageSize - 1)) != 0 || MaxPageSize < MinPageSize || (MaxPageSize & (MaxPageSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MinPageSize), $"Page sizes must be powers of two with 4096 <= {MinPageSize} <= {MaxPageSize}.");
        }
    }
}
