// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>A clock that moves only when told: timestamps in ticks of 100 ns.</summary>
internal sealed class ManualClock : TimeProvider
{
    private long _ticks;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => _ticks;

    public void Advance(TimeSpan by) => _ticks += by.Ticks;
}
