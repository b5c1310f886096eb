// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>
/// Runs a benchmark's code paths often enough for the JIT to promote them to optimised code before measuring.
/// </summary>
/// <remarks>
/// Benchmarks with one invocation per iteration call the measured method a few dozen times in all, under the 30 calls
/// after which tiered compilation recompiles a method: without this, the tracker's managed loops would be measured
/// as unoptimised tier-0 code while the raw ioctl, nearly all kernel time, would not care.
/// </remarks>
internal static class TierUp
{
    public static void Run(Action paths)
    {
        for (int i = 0; i < 60; i++)
        {
            paths();
        }

        Thread.Sleep(300); // the background compiler installs the optimised code
        paths();
    }
}
