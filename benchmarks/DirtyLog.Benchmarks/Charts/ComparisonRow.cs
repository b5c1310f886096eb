// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Benchmarks.Charts;

/// <summary>One row of the comparison with QEMU, as <c>benchmarks/qemu/compare.py</c> writes it: medians of each system's runs.</summary>
/// <param name="Guest">How fast the guest dirties memory (<c>idle</c>, <c>5,000 pages/s</c>, <c>unthrottled</c>).</param>
/// <param name="DirtyLogMode">The vCPUs' dirty log: <c>bitmap</c> or <c>ring</c>.</param>
/// <param name="Transport">The connections: <c>plain</c>, <c>multifd2</c>, <c>tls</c>, ...</param>
internal sealed record ComparisonRow(
    string Guest,
    string DirtyLogMode,
    string Transport,
    double QemuTotalMs,
    double DirtyLogTotalMs,
    double QemuDowntimeMs,
    double DirtyLogDowntimeMs);
