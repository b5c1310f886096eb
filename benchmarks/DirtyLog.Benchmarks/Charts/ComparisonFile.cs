// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;

namespace DirtyLog.Benchmarks.Charts;

/// <summary>What <c>benchmarks/qemu/compare.py</c> writes beside its chart: when and where it ran, and its rows.</summary>
internal sealed record ComparisonFile(string Date, string Machine, string Source, IReadOnlyList<ComparisonRow> Rows);
