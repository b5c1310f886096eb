// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using DirtyLog.Native;
using NUnit.Framework;

namespace DirtyLog.Tests.Native;

/// <summary>The errno funnel, exercised on descriptors every Linux machine has.</summary>
[TestFixture]
[Category("Unit")]
public class KernelErrorTests
{
    [Test]
    public void AnIoctlOnTheWrongDeviceNamesTheCallTheRequestAndTheErrno()
    {
        using IommufdContext notAnIommu = IommufdContext.Open("/dev/null");
        var error = Assert.Throws<KernelException>(() => notAnIommu.AllocateIoas())!;
        Assert.Multiple(() =>
        {
            Assert.That(error.Errno, Is.EqualTo(Errno.ENOTTY));
            Assert.That(error.ErrnoName, Is.EqualTo("ENOTTY"));
            Assert.That(error.Call, Is.EqualTo("ioctl"));
            Assert.That(error.Request, Is.EqualTo("IOMMU_IOAS_ALLOC on /dev/null"));
            Assert.That(error.Message, Does.StartWith("ioctl IOMMU_IOAS_ALLOC on /dev/null failed: ENOTTY (25)"));
        });
    }

    [Test]
    public void OpeningAMissingNodeFailsWithEnoent()
    {
        var error = Assert.Throws<KernelException>(() => IommufdContext.Open("/dev/dirtylog-no-such-node"))!;
        Assert.Multiple(() =>
        {
            Assert.That(error.Errno, Is.EqualTo(Errno.ENOENT));
            Assert.That(error.Message, Does.Contain("open /dev/dirtylog-no-such-node failed: ENOENT (2)"));
            Assert.That(error, Is.InstanceOf<IOException>());
        });
    }

    [Test]
    public void ABitmapShorterThanTheRangeIsRejectedBeforeAnySystemCall()
    {
        using IommufdContext iommufd = IommufdContext.Open("/dev/null");
        Assert.That(() => iommufd.GetDirtyBitmap(1, 0, 65 * 4096, 4096, new ulong[1], noClear: false),
            Throws.ArgumentException.With.Message.Contains("needs 2"));
        Assert.That(() => iommufd.GetDirtyBitmap(1, 0, 4096, 3000, new ulong[1], noClear: false),
            Throws.ArgumentException.With.Message.Contains("power of two"));
    }

    [Test]
    public void AClosedDescriptorCannotBeUsed()
    {
        IommufdContext iommufd = IommufdContext.Open("/dev/null");
        iommufd.Dispose();
        Assert.That(() => iommufd.AllocateIoas(), Throws.TypeOf<ObjectDisposedException>());
    }

    [Test]
    [Category("Kernel")]
    public void AMappingTheKernelCannotGiveFailsWithEnomemAndNamesTheCall()
    {
        // 128 TiB is the whole user address space of x86-64: no free range that large, so mmap answers ENOMEM.
        Assert.That(() => new DirtyLog.Native.AnonymousMapping(1UL << 47), Throws.TypeOf<KernelException>()
            .With.Property(nameof(KernelException.Errno)).EqualTo(Errno.ENOMEM).And.Message.Contains("mmap"));
    }
}
