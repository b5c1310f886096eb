// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>Benchmark categories the entry point acts on.</summary>
internal static class Categories
{
    /// <summary>Needs the real /dev/kvm: left out, with a note, where it is missing.</summary>
    public const string Kvm = "Kvm";
}
