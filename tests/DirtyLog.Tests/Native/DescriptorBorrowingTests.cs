// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using DirtyLog.Native;
using Microsoft.Win32.SafeHandles;
using NUnit.Framework;

namespace DirtyLog.Tests.Native;

/// <summary>
/// Descriptors lent by the VMM: never closed by DirtyLog, kept open while borrowed from a <see cref="SafeFileHandle"/>,
/// closed when owned; and a descriptor that is not what a binding expects is refused before anything is done with it.
/// </summary>
[TestFixture]
[Category("Unit")]
[NonParallelizable] // descriptor numbers are process-wide
public class DescriptorBorrowingTests
{
    private static bool IsOpen(int fd) => File.Exists($"/proc/self/fd/{fd}");

    private static SafeFileHandle OpenNull() => File.OpenHandle("/dev/null", FileMode.Open, FileAccess.ReadWrite);

    [Test]
    public void AnOwnedDescriptorIsClosedOnDisposeAndABorrowedOneNever()
    {
        using SafeFileHandle lent = OpenNull();
        int fd = (int)lent.DangerousGetHandle();
        FileDescriptorHandle.Borrow(fd, "lent as an int").Dispose();
        Assert.That(IsOpen(fd), Is.True, "borrowed as an int: left open");

        FileDescriptorHandle.Borrow(lent, "lent as a SafeHandle").Dispose();
        Assert.That(IsOpen(fd), Is.True, "borrowed as a SafeHandle: left open");

        SafeFileHandle given = OpenNull();
        int givenFd = (int)given.DangerousGetHandle();
        given.SetHandleAsInvalid(); // the VMM hands it over for good
        using (FileDescriptorHandle owned = FileDescriptorHandle.Own(givenFd, "given"))
        {
            Assert.That(owned.OwnsDescriptor, Is.True);
        }

        Assert.That(IsOpen(givenFd), Is.False, "owned: closed");
    }

    [Test]
    public void TheLendersDisposeWaitsForTheBorrowToEnd()
    {
        SafeFileHandle lent = OpenNull();
        int fd = (int)lent.DangerousGetHandle();
        FileDescriptorHandle borrowed = FileDescriptorHandle.Borrow(lent, "lent");
        lent.Dispose();
        Assert.That(IsOpen(fd), Is.True, "the VMM let go, but DirtyLog still borrows it: its number cannot be reused");
        borrowed.Dispose();
        Assert.That(IsOpen(fd), Is.False, "closed by the VMM's handle once DirtyLog let go");
    }

    [Test]
    public void ABorrowOfAClosedOrInvalidHandleIsRefused()
    {
        SafeFileHandle closed = OpenNull();
        closed.Dispose();
        Assert.Multiple(() =>
        {
            Assert.That(() => FileDescriptorHandle.Borrow(closed, "closed"), Throws.InstanceOf<ObjectDisposedException>());
            Assert.That(() => FileDescriptorHandle.Borrow(new SafeFileHandle(-1, ownsHandle: false), "invalid"), Throws.ArgumentException);
            Assert.That(() => FileDescriptorHandle.Borrow(-3, "negative"), Throws.InstanceOf<ArgumentOutOfRangeException>());
        });
    }

    [Test]
    public void BindingsRefuseADescriptorOfAnotherKindNamingWhatItIs()
    {
        using SafeFileHandle devNull = OpenNull();
        using FileDescriptorHandle handle = FileDescriptorHandle.Borrow(devNull, "the VMM's device");
        Assert.Multiple(() =>
        {
            Assert.That(() => IommufdContext.FromHandle(handle), Throws.ArgumentException.With.Message.Contains("/dev/null").And.Message.Contains("not an iommufd"));
            Assert.That(() => VfioDevice.FromHandle(handle), Throws.ArgumentException.With.Message.Contains("not a VFIO device"));
            Assert.That(() => KvmVm.FromHandle(handle), Throws.ArgumentException.With.Message.Contains("not a KVM VM"));
            Assert.That(() => KvmDirtyRing.Map(handle, 4096), Throws.ArgumentException.With.Message.Contains("not a KVM vCPU"));
        });
    }

    [Test]
    public void ADescriptorThatIsNotOpenFailsWithEbadf()
    {
        using FileDescriptorHandle notOpen = FileDescriptorHandle.Borrow(1_000_000, "never opened");
        var error = Assert.Throws<KernelException>(() => IommufdContext.FromHandle(notOpen))!;
        Assert.Multiple(() =>
        {
            Assert.That(error.Errno, Is.EqualTo(Errno.EBADF));
            Assert.That(error.Message, Does.Contain("never opened"));
        });
    }
}
