// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Testing;
using DirtyLog.Native;
using NUnit.Framework;

namespace DirtyLog.Tests.Emulation;

/// <summary>
/// The emulated IOMMU held to the kernel iommufd selftest's dirty-bitmap checks (iommufd_dirty_tracking): one write
/// every other entry, exact bits at entry granularity for normal and huge entries, several IOVA offsets and page
/// sizes, a second read empty unless NO_CLEAR, nothing leaking into the neighbouring entry.
/// </summary>
[TestFixture]
[Category("Unit")]
public class EmulatedIommuDirtyBitmapTests
{
    private const ulong KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

    private static (EmulatedGuestMemory Memory, EmulatedIommu Iommu, uint Ioas, EmulatedHwpt Hwpt) Create(ulong guestBytes = 64 * MiB)
    {
        var memory = new EmulatedGuestMemory(guestBytes);
        var iommu = new EmulatedIommu(memory);
        uint ioas = iommu.AllocateIoas();
        return (memory, iommu, ioas, iommu.AllocateHwpt(ioas, dirtyTracking: true));
    }

    [TestCase(4 * KiB, 4 * KiB, 1UL << 24, 128 * KiB)]
    [TestCase(4 * KiB, 4 * KiB, 1UL << 24, 640 * KiB)]
    [TestCase(4 * KiB, 8 * KiB, 1UL << 32, 256 * KiB)]
    [TestCase(2 * MiB, 4 * KiB, 1UL << 24, 16 * MiB)]
    [TestCase(2 * MiB, 64 * KiB, 1UL << 33, 32 * MiB)]
    [TestCase(2 * MiB, 2 * MiB, 1UL << 30, 16 * MiB)]
    public void EveryOtherEntryWrittenGivesExactBitsAtEntryGranularity(ulong entrySize, ulong pageSize, ulong iovaBase, ulong length)
    {
        (EmulatedGuestMemory memory, EmulatedIommu iommu, uint ioas, EmulatedHwpt hwpt) = Create();
        using (memory)
        {
            iommu.Map(ioas, iovaBase, 0, length, maxEntrySize: entrySize);
            hwpt.SetDirtyTracking(true);
            ulong entries = length / entrySize;
            for (ulong e = 0; e < entries; e += 2)
            {
                // One 8-byte write somewhere inside the entry, not at its start.
                Assert.That(hwpt.DmaWriteUInt64(iovaBase + (e * entrySize) + (entrySize / 2), e + 1), Is.True);
            }

            ulong bits = length / pageSize;
            ulong perEntry = Math.Max(1, entrySize / pageSize);
            ulong[] bitmap = new ulong[(bits + 63) / 64];
            hwpt.GetDirtyBitmap(iovaBase, length, pageSize, bitmap, noClear: false);
            for (ulong bit = 0; bit < bits; bit++)
            {
                bool dirtyEntry = (bit * pageSize / entrySize) % 2 == 0;
                bool set = (bitmap[bit / 64] & (1UL << (int)(bit % 64))) != 0;
                if (set != dirtyEntry)
                {
                    Assert.Fail($"bit {bit} (IOVA 0x{iovaBase + (bit * pageSize):x}) is {(set ? "set" : "clear")}; entries of {entrySize} bytes, {perEntry} bits each");
                }
            }

            Array.Clear(bitmap);
            hwpt.GetDirtyBitmap(iovaBase, length, pageSize, bitmap, noClear: false);
            Assert.That(bitmap, Is.All.Zero, "the first read cleared every dirty bit");
        }
    }

    [Test]
    public void NoClearLeavesTheBitsForTheNextRead()
    {
        (EmulatedGuestMemory memory, EmulatedIommu iommu, uint ioas, EmulatedHwpt hwpt) = Create();
        using (memory)
        {
            iommu.Map(ioas, 0, 0, 1 * MiB, 4 * KiB);
            hwpt.SetDirtyTracking(true);
            hwpt.DmaWriteUInt64(5 * 4096, 1);
            ulong[] first = new ulong[4], second = new ulong[4], third = new ulong[4];
            hwpt.GetDirtyBitmap(0, 1 * MiB, 4096, first, noClear: true);
            hwpt.GetDirtyBitmap(0, 1 * MiB, 4096, second, noClear: false);
            hwpt.GetDirtyBitmap(0, 1 * MiB, 4096, third, noClear: false);
            Assert.Multiple(() =>
            {
                Assert.That(first[0], Is.EqualTo(1UL << 5));
                Assert.That(second[0], Is.EqualTo(1UL << 5));
                Assert.That(third, Is.All.Zero);
            });
        }
    }

    [Test]
    public void TheBitmapIsOnlyOredInto()
    {
        (EmulatedGuestMemory memory, EmulatedIommu iommu, uint ioas, EmulatedHwpt hwpt) = Create();
        using (memory)
        {
            iommu.Map(ioas, 0, 0, 256 * KiB, 4 * KiB);
            hwpt.SetDirtyTracking(true);
            hwpt.DmaWriteUInt64(0, 1);
            ulong[] bitmap = [0b1000];
            hwpt.GetDirtyBitmap(0, 256 * KiB, 4096, bitmap, noClear: false);
            Assert.That(bitmap[0], Is.EqualTo(0b1001UL), "a stale bit in the caller's buffer survives: callers must zero it");
        }
    }

    [Test]
    public void AQueryStopsSilentlyAtTheFirstHoleAndLeavesWhatFollowsDirty()
    {
        (EmulatedGuestMemory memory, EmulatedIommu iommu, uint ioas, EmulatedHwpt hwpt) = Create();
        using (memory)
        {
            iommu.Map(ioas, 0, 0, 64 * KiB, 4 * KiB);
            iommu.Map(ioas, 128 * KiB, 1 * MiB, 64 * KiB, 4 * KiB); // a 64 KiB hole before it
            hwpt.SetDirtyTracking(true);
            hwpt.DmaWriteUInt64(4096, 1);
            hwpt.DmaWriteUInt64(128 * KiB, 2);
            ulong[] across = new ulong[1];
            hwpt.GetDirtyBitmap(0, 192 * KiB, 4096, across, noClear: false);
            ulong[] after = new ulong[1];
            hwpt.GetDirtyBitmap(128 * KiB, 64 * KiB, 4096, after, noClear: false);
            Assert.Multiple(() =>
            {
                Assert.That(across[0], Is.EqualTo(1UL << 1), "only the part before the hole is reported");
                Assert.That(after[0], Is.EqualTo(1UL), "what followed the hole was neither reported nor cleared");
            });
        }
    }

    [Test]
    public void EnablingStartsACleanEpochAndNothingIsLoggedWhileDisabled()
    {
        (EmulatedGuestMemory memory, EmulatedIommu iommu, uint ioas, EmulatedHwpt hwpt) = Create();
        using (memory)
        {
            iommu.Map(ioas, 0, 0, 64 * KiB, 4 * KiB);
            hwpt.DmaWriteUInt64(0, 1); // disabled: not logged
            hwpt.SetDirtyTracking(true);
            hwpt.DmaWriteUInt64(4096, 1);
            hwpt.SetDirtyTracking(false);
            hwpt.SetDirtyTracking(true); // a new epoch drops the bit of page 1
            hwpt.DmaWriteUInt64(8192, 1);
            ulong[] bitmap = new ulong[1];
            hwpt.GetDirtyBitmap(0, 64 * KiB, 4096, bitmap, noClear: false);
            Assert.Multiple(() =>
            {
                Assert.That(bitmap[0], Is.EqualTo(1UL << 2));
                Assert.That(memory.ReadUInt64(0), Is.EqualTo(1UL), "the untracked write still reached memory");
            });
        }
    }

    [Test]
    public void UnmapDropsTheDirtyBitsWithTheEntries()
    {
        (EmulatedGuestMemory memory, EmulatedIommu iommu, uint ioas, EmulatedHwpt hwpt) = Create();
        using (memory)
        {
            iommu.Map(ioas, 0, 0, 2 * MiB, 2 * MiB);
            hwpt.SetDirtyTracking(true);
            hwpt.DmaWriteUInt64(4096, 1);
            Assert.That(iommu.Unmap(ioas, 0, 2 * MiB), Is.EqualTo(2 * MiB));
            iommu.Map(ioas, 0, 0, 2 * MiB, 2 * MiB);
            ulong[] bitmap = new ulong[8];
            hwpt.GetDirtyBitmap(0, 2 * MiB, 4096, bitmap, noClear: false);
            Assert.That(bitmap, Is.All.Zero);
        }
    }

    [Test]
    public void AHugeEntryMarksOnlyTheBitsItCoversInsideTheQuery()
    {
        (EmulatedGuestMemory memory, EmulatedIommu iommu, uint ioas, EmulatedHwpt hwpt) = Create();
        using (memory)
        {
            iommu.Map(ioas, 0, 0, 4 * MiB, 2 * MiB);
            hwpt.SetDirtyTracking(true);
            hwpt.DmaWriteUInt64(3 * MiB, 1);
            ulong[] bitmap = new ulong[4];
            hwpt.GetDirtyBitmap(2 * MiB + (64 * KiB), 1 * MiB, 64 * KiB, bitmap, noClear: false);
            Assert.That(bitmap[0], Is.EqualTo((1UL << 16) - 1), "all 16 bits of the queried MiB, none outside");
        }
    }

    [Test]
    public void BadCallsFailWithTheKernelsErrno()
    {
        (EmulatedGuestMemory memory, EmulatedIommu iommu, uint ioas, EmulatedHwpt hwpt) = Create();
        using (memory)
        {
            iommu.Map(ioas, 0, 0, 1 * MiB, 4 * KiB);
            EmulatedHwpt plain = iommu.AllocateHwpt(ioas, dirtyTracking: false);
            ulong[] bitmap = new ulong[64];
            Assert.Multiple(() =>
            {
                Assert.That(Errno(() => plain.SetDirtyTracking(true)), Is.EqualTo(DirtyLog.Native.Errno.EOPNOTSUPP), "a HWPT not allocated for dirty tracking");
                Assert.That(Errno(() => plain.GetDirtyBitmap(0, 4096, 4096, bitmap, false)), Is.EqualTo(DirtyLog.Native.Errno.EOPNOTSUPP));
                Assert.That(Errno(() => hwpt.GetDirtyBitmap(100, 4096, 4096, bitmap, false)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL), "unaligned iova");
                Assert.That(Errno(() => hwpt.GetDirtyBitmap(0, 4096, 8192, bitmap, false)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL), "length not aligned to the page size");
                // The real binding refuses these before the ioctl; the emulator must fail as the real port does.
                Assert.That(() => hwpt.GetDirtyBitmap(0, 4096, 0, bitmap, false), Throws.ArgumentException.With.Property("ParamName").EqualTo("pageSize"), "page size 0");
                Assert.That(() => hwpt.GetDirtyBitmap(0, 3 * 4096 * 4, 3 * 4096, bitmap, false), Throws.ArgumentException.With.Message.Contains("not a power of two"), "a page size that is not a power of two");
                Assert.That(() => hwpt.GetDirtyBitmap(0, 4096, 3000, bitmap, false), Throws.ArgumentException.With.Message.Contains("not a power of two"), "3000, as the hostile suite tried");
                Assert.That(() => hwpt.GetDirtyBitmap(0, 1 * MiB, 4096, new ulong[1], false), Throws.ArgumentException.With.Property("ParamName").EqualTo("bitmap"), "a bitmap too short for the range");
                Assert.That(Errno(() => hwpt.GetDirtyBitmap(ulong.MaxValue - 4095, 8192, 4096, bitmap, false)), Is.EqualTo(DirtyLog.Native.Errno.EOVERFLOW));
                Assert.That(Errno(() => iommu.Map(ioas, 512 * KiB, 0, 1 * MiB)), Is.EqualTo(DirtyLog.Native.Errno.EEXIST), "overlapping map");
                Assert.That(Errno(() => iommu.Map(ioas, 8 * MiB, 100, 4096)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL), "unaligned map");
                Assert.That(Errno(() => iommu.Map(ioas, 8 * MiB, 63 * MiB, 2 * MiB)), Is.EqualTo(DirtyLog.Native.Errno.EFAULT), "memory past the guest");
                Assert.That(Errno(() => iommu.Unmap(ioas, 4096, 4096)), Is.EqualTo(DirtyLog.Native.Errno.ENOENT), "an unmap that cuts a mapping");
                Assert.That(Errno(() => iommu.Unmap(ioas, 0, 0)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL));
                Assert.That(Errno(() => iommu.Unmap(99, 0, 4096)), Is.EqualTo(DirtyLog.Native.Errno.ENOENT), "an unknown IOAS");
                Assert.That(Errno(() => iommu.Unmap(ioas, 16 * MiB, 4096)), Is.EqualTo(DirtyLog.Native.Errno.ENOENT), "a range that holds no mapping: the kernel's answer, found by the differential test on the real iommufd");
                Assert.That(iommu.Unmap(iommu.AllocateIoas(), 0, ulong.MaxValue), Is.Zero, "unmap-all of an empty IOAS succeeds, as in the kernel");
                Assert.That(hwpt.DmaWriteUInt64(32 * MiB, 1), Is.False, "DMA to an unmapped IOVA faults");
            });
        }
    }

    [Test]
    public void AMapOutsideTheApertureIsEinvalAsInTheKernel()
    {
        using var memory = new EmulatedGuestMemory(4 * MiB);
        var iommu = new EmulatedIommu(memory) { Aperture = new DirtyLog.Tracking.AddressRange(1UL << 24, (1UL << 31) - (1UL << 24)) };
        uint ioas = iommu.AllocateIoas();
        Assert.Multiple(() =>
        {
            Assert.That(Errno(() => iommu.Map(ioas, 0, 0, 64 * KiB)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL), "below the aperture");
            Assert.That(Errno(() => iommu.Map(ioas, (1UL << 31) - (32 * KiB), 0, 64 * KiB)), Is.EqualTo(DirtyLog.Native.Errno.EINVAL), "across its end");
            Assert.That(() => iommu.Map(ioas, 1UL << 24, 0, 64 * KiB), Throws.Nothing, "inside");
            Assert.That(() => iommu.Map(ioas, (1UL << 31) - (64 * KiB), 64 * KiB, 64 * KiB), Throws.Nothing, "ending on its last byte");
        });
    }

    [Test]
    public void InjectedFaultsFailTheNextQueriesOnly()
    {
        (EmulatedGuestMemory memory, EmulatedIommu iommu, uint ioas, EmulatedHwpt hwpt) = Create();
        using (memory)
        {
            iommu.Map(ioas, 0, 0, 64 * KiB, 4 * KiB);
            hwpt.SetDirtyTracking(true);
            hwpt.FailNextReports(DirtyLog.Native.Errno.EIO, count: 2);
            ulong[] bitmap = new ulong[1];
            Assert.Multiple(() =>
            {
                Assert.That(Errno(() => hwpt.GetDirtyBitmap(0, 64 * KiB, 4096, bitmap, false)), Is.EqualTo(DirtyLog.Native.Errno.EIO));
                Assert.That(Errno(() => hwpt.GetDirtyBitmap(0, 64 * KiB, 4096, bitmap, false)), Is.EqualTo(DirtyLog.Native.Errno.EIO));
                Assert.That(() => hwpt.GetDirtyBitmap(0, 64 * KiB, 4096, bitmap, false), Throws.Nothing);
            });
        }
    }

    private static DirtyLog.Native.Errno Errno(Action call) => Assert.Throws<KernelException>(() => call())!.Errno;
}
