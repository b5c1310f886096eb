// Licensed under the MIT License. See LICENSE in the repository root.


namespace DirtyLog.Native.Linux.Kvm;

/// <summary>KVM ioctl numbers, capabilities and flags, named as in <c>include/uapi/linux/kvm.h</c> (x86-64).</summary>
/// <remarks>KVM encodes struct sizes in its ioctl numbers: a wrong struct size here is a different command (ENOTTY).</remarks>
[UapiConstants("linux/kvm.h")]
internal static class KvmConstants
{
    public const uint KVMIO = 0xAE;

    public const uint KVM_GET_API_VERSION = (KVMIO << 8) | 0x00;
    public const uint KVM_CREATE_VM = (KVMIO << 8) | 0x01;
    public const uint KVM_CHECK_EXTENSION = (KVMIO << 8) | 0x03;
    public const uint KVM_GET_VCPU_MMAP_SIZE = (KVMIO << 8) | 0x04;
    public const uint KVM_CREATE_VCPU = (KVMIO << 8) | 0x41;
    public const uint KVM_SET_TSS_ADDR = (KVMIO << 8) | 0x47;
    public const uint KVM_RUN = (KVMIO << 8) | 0x80;
    public const uint KVM_RESET_DIRTY_RINGS = (KVMIO << 8) | 0xc7;

    // Sized ioctls: _IOW = 1 << 30, _IOR = 2 << 30, _IOWR = 3 << 30, size << 16.
    public const uint KVM_GET_DIRTY_LOG = (1u << 30) | (16u << 16) | (KVMIO << 8) | 0x42;
    public const uint KVM_SET_USER_MEMORY_REGION = (1u << 30) | (32u << 16) | (KVMIO << 8) | 0x46;
    public const uint KVM_GET_REGS = (2u << 30) | (144u << 16) | (KVMIO << 8) | 0x81;
    public const uint KVM_SET_REGS = (1u << 30) | (144u << 16) | (KVMIO << 8) | 0x82;
    public const uint KVM_GET_SREGS = (2u << 30) | (312u << 16) | (KVMIO << 8) | 0x83;
    public const uint KVM_SET_SREGS = (1u << 30) | (312u << 16) | (KVMIO << 8) | 0x84;
    public const uint KVM_ENABLE_CAP = (1u << 30) | (104u << 16) | (KVMIO << 8) | 0xa3;
    public const uint KVM_CLEAR_DIRTY_LOG = (3u << 30) | (24u << 16) | (KVMIO << 8) | 0xc0;
    public const uint KVM_SET_SIGNAL_MASK = (1u << 30) | (4u << 16) | (KVMIO << 8) | 0x8b;

    public const uint KVM_API_VERSION = 12;

    public const uint KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;

    public const uint KVM_CAP_USER_MEMORY = 3;
    public const uint KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
    public const uint KVM_CAP_DIRTY_LOG_RING = 192;
    public const uint KVM_CAP_DIRTY_LOG_RING_ACQ_REL = 223;
    public const uint KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1 << 0;
    public const uint KVM_DIRTY_LOG_INITIALLY_SET = 1 << 1;

    public const uint KVM_EXIT_IO = 2;
    public const uint KVM_EXIT_HLT = 5;
    public const uint KVM_EXIT_MMIO = 6;
    public const uint KVM_EXIT_INTR = 10;
    public const uint KVM_EXIT_SHUTDOWN = 8;
    public const uint KVM_EXIT_FAIL_ENTRY = 9;
    public const uint KVM_EXIT_INTERNAL_ERROR = 17;
    public const uint KVM_EXIT_DIRTY_RING_FULL = 31;

    public const uint KVM_DIRTY_GFN_F_DIRTY = 1 << 0;
    public const uint KVM_DIRTY_GFN_F_RESET = 1 << 1;
    public const uint KVM_DIRTY_LOG_PAGE_OFFSET = 64;
}
