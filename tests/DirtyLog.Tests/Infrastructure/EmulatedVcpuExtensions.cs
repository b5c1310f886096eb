// Licensed under the MIT License. See LICENSE in the repository root.

using System.Linq;
using DirtyLog.Testing;
using NUnit.Framework;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>Guest writes by an emulated vCPU, for tests that count what its dirty ring reports.</summary>
internal static class EmulatedVcpuExtensions
{
    /// <summary>The vCPU writes one word in each of <paramref name="pages"/> pages from <paramref name="firstPage"/>; fails the test if it stops early.</summary>
    public static void WritePages(this EmulatedKvmVcpu vcpu, ulong firstPage, int pages)
    {
        ulong[] addresses = Enumerable.Range(0, pages).Select(i => ((firstPage + (ulong)i) * 4096) + 8).ToArray();
        EmulatedVcpuExit exit = vcpu.Run(addresses, value: 7, out int written);
        Assert.That(written, Is.EqualTo(pages), $"the vCPU stopped early ({exit})");
    }
}
