// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Tracking;

/// <summary>A device cannot track what is mapped; raised while planning, before anything is started.</summary>
/// <remarks>Thread safety: immutable once thrown; safe to share between threads.</remarks>
public sealed class DeviceTrackingPlanException : Exception
{
    /// <summary>Creates the exception.</summary>
    public DeviceTrackingPlanException()
        : base("The device cannot track the mapped ranges.")
    {
    }

    /// <summary>Creates the exception with the reason.</summary>
    /// <param name="message">Why the plan cannot be made.</param>
    public DeviceTrackingPlanException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with the reason and a cause.</summary>
    /// <param name="message">Why the plan cannot be made.</param>
    /// <param name="innerException">The cause.</param>
    public DeviceTrackingPlanException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
