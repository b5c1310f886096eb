// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Native.Linux;

/// <summary>
/// The asm-generic ioctl encoding (x86-64, arm64, riscv64, loongarch): <c>dir &lt;&lt; 30 | size &lt;&lt; 16 | type &lt;&lt; 8 | nr</c>.
/// iommufd and VFIO use <c>_IO</c> for everything and carry the size inside their structs; KVM, userfaultfd and
/// PAGEMAP_SCAN encode the struct size, so a wrong struct size yields a different request number.
/// </summary>
internal static class IoctlCode
{
    private const uint None = 0;
    private const uint Write = 1;
    private const uint Read = 2;

    public static uint IO(uint type, uint nr) => Encode(None, type, nr, 0);

    public static uint IOW(uint type, uint nr, uint size) => Encode(Write, type, nr, size);

    public static uint IOR(uint type, uint nr, uint size) => Encode(Read, type, nr, size);

    public static uint IOWR(uint type, uint nr, uint size) => Encode(Read | Write, type, nr, size);

    private static uint Encode(uint dir, uint type, uint nr, uint size) => (dir << 30) | (size << 16) | (type << 8) | nr;
}
