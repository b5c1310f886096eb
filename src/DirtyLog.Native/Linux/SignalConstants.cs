// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native.Linux;

/// <summary>Signal numbers and <c>rt_sigprocmask</c> operations, named as in <c>asm/signal.h</c> (x86-64).</summary>
/// <remarks>The kernel's sigset is one 64-bit word on x86-64 (its <c>_NSIG</c>, 64, is not exported): bit <c>n - 1</c> is signal <c>n</c>.</remarks>
[UapiConstants("asm/signal.h")]
internal static class SignalConstants
{
    public const int SIGUSR1 = 10;
    public const int SIGUSR2 = 12;
    public const int SIG_BLOCK = 0;
    public const int SIG_UNBLOCK = 1;
}
