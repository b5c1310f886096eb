// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native.Linux;

/// <summary>The x86-64 system call numbers DirtyLog calls directly, named as in <c>asm/unistd.h</c>.</summary>
[UapiConstants("asm/unistd.h")]
internal static class SyscallNumbers
{
    public const long __NR_rt_sigprocmask = 14;
    public const long __NR_mremap = 25;
    public const long __NR_rt_sigtimedwait = 128;
    public const long __NR_gettid = 186;
    public const long __NR_tgkill = 234;
    public const long __NR_process_vm_readv = 310;
    public const long __NR_userfaultfd = 323;
    public const long __NR_pidfd_send_signal = 424;
    public const long __NR_pidfd_open = 434;
}
