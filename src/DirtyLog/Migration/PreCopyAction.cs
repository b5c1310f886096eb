// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration;

/// <summary>What to do after a pre-copy round.</summary>
public enum PreCopyAction
{
    /// <summary>Run another pre-copy round.</summary>
    Continue,

    /// <summary>Pause the guest and its devices, run the final harvest, send the rest.</summary>
    StopCopy,

    /// <summary>Give up; the guest keeps running on the source.</summary>
    Abort,

    /// <summary>The throttle callback was asked to slow the guest; run another round.</summary>
    Throttle,

    /// <summary>
    /// Pre-copy does not converge (<see cref="PreCopyOptions.SwitchToPostCopy"/>): pause, send the device state and the
    /// pages dirty since they were sent as a list to discard, and resume the guest at the destination, which fetches
    /// those pages on demand while the source pushes them.
    /// </summary>
    PostCopy,
}
