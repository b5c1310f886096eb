// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native.Linux;

/// <summary>Flags of <c>pidfd_open</c> and <c>pidfd_send_signal</c>, named as in <c>linux/pidfd.h</c> (Linux 6.9 and later).</summary>
[UapiConstants("linux/pidfd.h")]
internal static class PidfdConstants
{
    /// <summary><c>pidfd_open</c>: a descriptor for one thread, not its thread group (the kernel's <c>O_EXCL</c>).</summary>
    public const int PIDFD_THREAD = 0x80;

    /// <summary><c>pidfd_send_signal</c>: deliver to the thread itself.</summary>
    public const int PIDFD_SIGNAL_THREAD = 1;
}
