// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using DirtyLog.Native;

namespace DirtyLog.KernelTests;

/// <summary>
/// Runs every kernel test and prints one line per test, <c>KERNEL-TEST PASS|FAIL name</c>, then
/// <c>KERNEL-TESTS N passed, N failed</c>: the CI stage that boots a kernel with iommufd reads them from the serial log.
/// Without <c>/dev/iommu</c> it says so and exits 2 (nothing ran).
/// </summary>
internal static class Program
{
    internal static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "--layout-asserts")
        {
            // For the host: C asserts of the test command's layout, compiled against the kernel source's header.
            foreach (string line in MockIommu.LayoutAsserts())
            {
                Console.WriteLine(line);
            }

            return 0;
        }

        if (!File.Exists(IommufdContext.DevicePath))
        {
            Console.WriteLine($"KERNEL-TESTS {IommufdContext.DevicePath} is missing: nothing ran");
            return 2;
        }

        int seed = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 20261130;
        List<(string Name, Action Body)> tests = [.. IommufdKernelTests.All(), .. DifferentialTests.All(seed)];
        int passed = 0, failed = 0;
        foreach ((string name, Action body) in tests)
        {
            long started = Stopwatch.GetTimestamp();
            try
            {
                body();
                passed++;
                Console.WriteLine($"KERNEL-TEST PASS {name} ({Stopwatch.GetElapsedTime(started).TotalMilliseconds:F0} ms)");
            }
            catch (Exception e)
            {
                failed++;
                Console.WriteLine($"KERNEL-TEST FAIL {name}: {e.GetType().Name}: {e.Message}");
                Console.WriteLine(e.StackTrace);
            }
        }

        Console.WriteLine($"KERNEL-TESTS {passed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }
}
