// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using DirtyLog.Native;

namespace DirtyLog.KernelTests;

/// <summary>Flags of a mock device (the kernel's <c>MOCK_FLAGS_DEVICE_*</c>).</summary>
[Flags]
internal enum MockDeviceFlags : uint
{
    None = 0,

    /// <summary>An IOMMU without dirty tracking behind the device.</summary>
    NoDirty = 1 << 0,

    /// <summary>IO page table entries of 512 mock pages (1 MiB) where the IOVA allows.</summary>
    HugeIova = 1 << 1,
}

/// <summary>A mock device bound to an iommufd: its selftest id, the page table it is attached to, its device id.</summary>
internal readonly record struct MockDevice(uint SelftestId, uint HwptId, uint DeviceId);

/// <summary>
/// The kernel's test IOMMU (<c>CONFIG_IOMMUFD_TEST</c>), driven through <c>IOMMU_TEST_CMD</c> on an iommufd: mock devices
/// and the dirty bits of their IO page table. Test code only: the layout is the kernel's <c>struct iommu_test_cmd</c>
/// (drivers/iommu/iommufd/iommufd_test.h): size, op, id, a reserved u32, a 48-byte union, a final u32; 72 bytes.
/// </summary>
/// <remarks>Not thread-safe; one test drives one iommufd.</remarks>
internal static unsafe partial class MockIommu
{
    /// <summary>The mock IO page: half a CPU page.</summary>
    public const ulong MockPageSize = 2048;

    /// <summary>A huge mock IO page: 512 mock pages.</summary>
    public const ulong HugeMockPageSize = 512 * MockPageSize;

    /// <summary>The mock IOMMU's aperture, [2^24, 2^31 - 1].</summary>
    public const ulong ApertureStart = 1UL << 24, ApertureLast = (1UL << 31) - 1;

    public const int CommandBytes = 72;

    private const uint IommuTestCmd = 0x3BA0; // _IO(';', 0x80 + 32)
    private const uint OpMockDomain = 2, OpMockDomainReplace = 10, OpMockDomainFlags = 12, OpDirty = 13;

    // Offsets in struct iommu_test_cmd, checked against iommufd_test.h by eng/kernel-tests.sh (LayoutAsserts).
    private const int SizeAt = 0, OpAt = 4, IdAt = 8, UnionAt = 16, LastAt = 64;
    private const int StdevIdAt = 16, HwptIdAt = 20, IdevIdAt = 24, DevFlagsAt = 28; // mock_domain(_flags)
    private const int PtIdAt = 16;                                                   // mock_domain_replace
    private const int DirtyFlagsAt = 16, DirtyIovaAt = 24, DirtyLengthAt = 32, DirtyPageSizeAt = 40, DirtyUptrAt = 48, DirtyCountAt = 56;

    /// <summary>
    /// C <c>static_assert</c>s of every size, offset and constant this binding uses, to compile against the kernel
    /// source's <c>iommufd_test.h</c> (the way the uapi structs are checked against the headers).
    /// </summary>
    public static IEnumerable<string> LayoutAsserts()
    {
        string Offset(string field, int at) => $"static_assert(offsetof(struct iommu_test_cmd, {field}) == {at}, \"{field}\");";
        yield return "#include <stddef.h>";
        yield return "#include <assert.h>";
        yield return "#include <linux/ioctl.h>";
        yield return "#include \"iommufd_test.h\"";
        yield return $"static_assert(sizeof(struct iommu_test_cmd) == {CommandBytes}, \"size\");";
        yield return Offset("size", SizeAt);
        yield return Offset("op", OpAt);
        yield return Offset("id", IdAt);
        yield return Offset("add_reserved", UnionAt);
        yield return Offset("last", LastAt);
        yield return Offset("mock_domain.out_stdev_id", StdevIdAt);
        yield return Offset("mock_domain.out_hwpt_id", HwptIdAt);
        yield return Offset("mock_domain.out_idev_id", IdevIdAt);
        yield return Offset("mock_domain_flags.dev_flags", DevFlagsAt);
        yield return Offset("mock_domain_replace.pt_id", PtIdAt);
        yield return Offset("dirty.flags", DirtyFlagsAt);
        yield return Offset("dirty.iova", DirtyIovaAt);
        yield return Offset("dirty.length", DirtyLengthAt);
        yield return Offset("dirty.page_size", DirtyPageSizeAt);
        yield return Offset("dirty.uptr", DirtyUptrAt);
        yield return Offset("dirty.out_nr_dirty", DirtyCountAt);
        yield return $"static_assert(IOMMU_TEST_CMD == 0x{IommuTestCmd:X}, \"IOMMU_TEST_CMD\");";
        yield return $"static_assert(IOMMU_TEST_OP_MOCK_DOMAIN == {OpMockDomain}, \"MOCK_DOMAIN\");";
        yield return $"static_assert(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE == {OpMockDomainReplace}, \"MOCK_DOMAIN_REPLACE\");";
        yield return $"static_assert(IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS == {OpMockDomainFlags}, \"MOCK_DOMAIN_FLAGS\");";
        yield return $"static_assert(IOMMU_TEST_OP_DIRTY == {OpDirty}, \"DIRTY\");";
        yield return $"static_assert(MOCK_FLAGS_DEVICE_NO_DIRTY == {(uint)MockDeviceFlags.NoDirty}, \"NO_DIRTY\");";
        yield return $"static_assert(MOCK_FLAGS_DEVICE_HUGE_IOVA == {(uint)MockDeviceFlags.HugeIova}, \"HUGE_IOVA\");";
        yield return $"static_assert(MOCK_APERTURE_START == {ApertureStart}UL, \"APERTURE_START\");";
        yield return $"static_assert(MOCK_APERTURE_LAST == {ApertureLast}UL, \"APERTURE_LAST\");";
    }

    /// <summary>Creates a mock device attached to <paramref name="pageTableId"/> (an IOAS, or a HWPT).</summary>
    public static MockDevice CreateDevice(IommufdContext iommufd, uint pageTableId, MockDeviceFlags flags = MockDeviceFlags.None)
    {
        byte* cmd = stackalloc byte[CommandBytes];
        Header(cmd, flags == MockDeviceFlags.None ? OpMockDomain : OpMockDomainFlags, pageTableId);
        *(uint*)(cmd + DevFlagsAt) = (uint)flags;
        Issue(iommufd, cmd, "IOMMU_TEST_OP_MOCK_DOMAIN");
        return new MockDevice(*(uint*)(cmd + StdevIdAt), *(uint*)(cmd + HwptIdAt), *(uint*)(cmd + IdevIdAt));
    }

    /// <summary>Attaches the mock device to another page table (a HWPT with dirty tracking, say).</summary>
    public static void Replace(IommufdContext iommufd, MockDevice device, uint pageTableId)
    {
        byte* cmd = stackalloc byte[CommandBytes];
        Header(cmd, OpMockDomainReplace, device.SelftestId);
        *(uint*)(cmd + PtIdAt) = pageTableId;
        Issue(iommufd, cmd, "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE");
    }

    /// <summary>
    /// "DMA": sets the dirty bit of every mapped mock page of [<paramref name="iova"/>, + <paramref name="length"/>) whose
    /// bit is set in <paramref name="pages"/> (one bit per <paramref name="pageSize"/>); returns how many it set.
    /// </summary>
    public static ulong Dirty(IommufdContext iommufd, uint hwptId, ulong iova, ulong length, ReadOnlySpan<ulong> pages, ulong pageSize = MockPageSize)
    {
        byte* cmd = stackalloc byte[CommandBytes];
        Header(cmd, OpDirty, hwptId);
        fixed (ulong* bitmap = pages)
        {
            *(uint*)(cmd + DirtyFlagsAt) = 0;
            *(ulong*)(cmd + DirtyIovaAt) = iova;
            *(ulong*)(cmd + DirtyLengthAt) = length;
            *(ulong*)(cmd + DirtyPageSizeAt) = pageSize;
            *(ulong*)(cmd + DirtyUptrAt) = (ulong)bitmap;
            Issue(iommufd, cmd, "IOMMU_TEST_OP_DIRTY");
        }

        return *(ulong*)(cmd + DirtyCountAt);
    }

    /// <summary>
    /// Issues <c>IOMMU_TEST_OP_MOCK_DOMAIN</c> on <paramref name="ioasId"/> declaring <paramref name="size"/> bytes, the
    /// bytes past 72 set to <paramref name="trailing"/>: the kernel's size rule (at least up to the end of <c>last</c>,
    /// anything past its struct zero) tells where its struct ends. Returns 0 or the errno.
    /// </summary>
    public static Errno ProbeSize(IommufdContext iommufd, uint ioasId, uint size, byte trailing)
    {
        byte* cmd = stackalloc byte[128];
        new Span<byte>(cmd, 128).Fill(trailing);
        Header(cmd, OpMockDomain, ioasId);
        new Span<byte>(cmd + UnionAt, CommandBytes - UnionAt).Clear();
        *(uint*)cmd = size;
        return ioctl(iommufd.Handle.Descriptor, IommuTestCmd, cmd) < 0 ? (Errno)Marshal.GetLastPInvokeError() : 0;
    }

    private static void Header(byte* cmd, uint op, uint id)
    {
        new Span<byte>(cmd, CommandBytes).Clear();
        *(uint*)(cmd + SizeAt) = CommandBytes;
        *(uint*)(cmd + OpAt) = op;
        *(uint*)(cmd + IdAt) = id;
    }

    private static void Issue(IommufdContext iommufd, byte* cmd, string what)
    {
        if (ioctl(iommufd.Handle.Descriptor, IommuTestCmd, cmd) < 0)
        {
            throw new KernelException("ioctl", what, (Errno)Marshal.GetLastPInvokeError());
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(int fd, nuint request, void* argument);
}
