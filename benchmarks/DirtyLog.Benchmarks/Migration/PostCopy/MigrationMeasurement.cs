// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Benchmarks.Migration.PostCopy;

/// <summary>What one migration of <see cref="PostCopyBenchmarks"/> measured.</summary>
/// <param name="Total">Start to every page at the destination.</param>
/// <param name="Downtime">The source's pause to the destination's word that the guest runs there.</param>
/// <param name="BytesSent">Bytes the source wrote on every connection.</param>
/// <param name="Pace">The guest's passes per second over the migration (either host), over its pace alone before.</param>
/// <param name="Rounds">Pre-copy's rounds.</param>
/// <param name="PaceBeforeSwitch">The guest's pace on the source, from the start to its pause, over its pace alone.</param>
/// <param name="PaceAfterSwitch">The guest's pace on the destination, from the source's pause to the end, over its pace alone.</param>
internal readonly record struct MigrationMeasurement(TimeSpan Total, TimeSpan Downtime, long BytesSent, double Pace, int Rounds, double PaceBeforeSwitch, double PaceAfterSwitch);
