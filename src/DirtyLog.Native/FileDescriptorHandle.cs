// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.InteropServices;
using System.Text;
using System.Runtime.Versioning;

namespace DirtyLog.Native;

/// <summary>
/// A Linux file descriptor DirtyLog works on: one it opened and owns (closed exactly once when released), or one it
/// borrows from the VMM (<see cref="Borrow(SafeHandle, string)"/>, <see cref="Borrow(int, string)"/>), which it never
/// closes.
/// </summary>
/// <remarks>
/// <para>Calls through it take a reference for their duration, so a concurrent dispose cannot close a descriptor in use.</para>
/// <para>A descriptor borrowed from the VMM's own <see cref="SafeHandle"/> keeps a reference on that handle until this
/// one is disposed: the VMM may dispose its handle at any time, and the descriptor is closed (by the VMM's handle) only
/// after DirtyLog let go of it, so its number can never be reused under DirtyLog. A descriptor borrowed as a bare
/// <see langword="int"/> has no such guard: the VMM must keep it open until DirtyLog's objects over it are disposed.</para>
/// <para>Thread safety: as <see cref="SafeHandle"/>; every member may be called from any thread.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed class FileDescriptorHandle : SafeHandle
{
    private SafeHandle? _lender; // the VMM's handle this one borrows from, referenced until release
    private bool _owns = true;   // whether releasing closes the descriptor

    /// <summary>Creates an invalid handle; <see cref="Open(string)"/> is the way to get a valid one.</summary>
    public FileDescriptorHandle()
        : base(new IntPtr(-1), ownsHandle: true)
    {
    }

    /// <summary>The device or file this descriptor was opened on, for error messages.</summary>
    public string Path { get; private set; } = "";

    /// <inheritdoc/>
    public override bool IsInvalid => handle.ToInt64() < 0;

    /// <summary>Opens <paramref name="path"/> read-write, close-on-exec.</summary>
    /// <param name="path">The device node, such as <c>/dev/iommu</c>.</param>
    /// <returns>The open descriptor.</returns>
    /// <exception cref="KernelException"><c>open</c> failed; the errno tells why (ENOENT when the node is missing).</exception>
    public static FileDescriptorHandle Open(string path) => Open(path, Interop.O_RDWR);

    /// <summary>Opens <paramref name="path"/> with <paramref name="flags"/> (O_CLOEXEC is added).</summary>
    internal static unsafe FileDescriptorHandle Open(string path, int flags)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        int fd;
        fixed (byte* p = bytes)
        {
            fd = Interop.open(p, flags | Interop.O_CLOEXEC);
        }

        if (fd < 0)
        {
            throw KernelErrors.Last("open", path);
        }

        var handle = new FileDescriptorHandle { Path = path };
        handle.SetHandle(new IntPtr(fd));
        return handle;
    }

    /// <summary>Whether disposing this handle closes the descriptor (false for a borrowed one).</summary>
    public bool OwnsDescriptor => _owns;

    /// <summary>The descriptor number, for messages and for the VMM's own calls; DirtyLog's calls go through the handle.</summary>
    public int Descriptor => (int)handle.ToInt64();

    /// <summary>Takes ownership of a descriptor: disposing the handle closes it.</summary>
    /// <param name="fd">The descriptor (for instance a VM fd the VMM hands over for good).</param>
    /// <param name="description">What it is, for error messages (such as <c>kvm-vm</c>).</param>
    /// <returns>The owning handle.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="fd"/> is negative.</exception>
    public static FileDescriptorHandle Own(int fd, string description) => Wrap(fd, description, owns: true, lender: null);

    /// <summary>Borrows a descriptor the VMM owns and keeps open: disposing the handle never closes it.</summary>
    /// <param name="fd">The descriptor.</param>
    /// <param name="description">What it is, for error messages.</param>
    /// <returns>A handle that does not own the descriptor.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="fd"/> is negative.</exception>
    public static FileDescriptorHandle Borrow(int fd, string description) => Wrap(fd, description, owns: false, lender: null);

    /// <summary>
    /// Borrows the descriptor of the VMM's own handle (a <see cref="Microsoft.Win32.SafeHandles.SafeFileHandle"/> or
    /// its own kind): never closed by DirtyLog; the VMM's handle stays referenced until this one is disposed.
    /// </summary>
    /// <param name="lender">The VMM's handle.</param>
    /// <param name="description">What it is, for error messages.</param>
    /// <returns>A handle that does not own the descriptor.</returns>
    /// <exception cref="ObjectDisposedException"><paramref name="lender"/> is closed.</exception>
    /// <exception cref="ArgumentException"><paramref name="lender"/> is invalid.</exception>
    public static FileDescriptorHandle Borrow(SafeHandle lender, string description)
    {
        ArgumentNullException.ThrowIfNull(lender);
        if (lender.IsInvalid)
        {
            throw new ArgumentException($"The handle lent as {description} is invalid.", nameof(lender));
        }

        bool added = false;
        lender.DangerousAddRef(ref added); // throws ObjectDisposedException when closed
        try
        {
            return Wrap(checked((int)lender.DangerousGetHandle().ToInt64()), description, owns: false, lender);
        }
        catch
        {
            lender.DangerousRelease();
            throw;
        }
    }

    /// <summary>
    /// What the descriptor is, as <c>/proc/self/fd</c> names it: <c>anon_inode:kvm-vm</c>,
    /// <c>anon_inode:kvm-vcpu:0</c>, <c>/dev/iommu</c>, <c>/dev/vfio/devices/vfio0</c>.
    /// </summary>
    /// <returns>The name.</returns>
    /// <exception cref="KernelException">The descriptor is not open (EBADF).</exception>
    internal string Describe()
    {
        string? target = new System.IO.FileInfo($"/proc/self/fd/{Descriptor}").LinkTarget;
        return target ?? throw KernelErrors.From("readlink", $"/proc/self/fd/{Descriptor} ({Path})", Errno.EBADF);
    }

    /// <summary>Checks that the descriptor is of the kind a binding expects, before anything is done with it.</summary>
    /// <param name="prefix">The start of its <c>/proc/self/fd</c> name, such as <c>anon_inode:kvm-vm</c>.</param>
    /// <param name="what">What the binding expected, for the message.</param>
    /// <param name="paramName">The caller's parameter that holds this handle.</param>
    /// <returns>Its name.</returns>
    /// <exception cref="KernelException">The descriptor is not open (EBADF).</exception>
    /// <exception cref="ArgumentException">It is open but something else.</exception>
    internal string Require(string prefix, string what, string paramName = "handle")
    {
        string name = Describe();
        if (!name.StartsWith(prefix, StringComparison.Ordinal))
        {
            throw new ArgumentException($"Descriptor {Descriptor} ({Path}) is {name}, not {what}.", paramName);
        }

        return name;
    }

    private static FileDescriptorHandle Wrap(int fd, string description, bool owns, SafeHandle? lender)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        ArgumentException.ThrowIfNullOrEmpty(description);
        var result = new FileDescriptorHandle { Path = description, _owns = owns, _lender = lender };
        result.SetHandle(new IntPtr(fd));
        return result;
    }

    /// <summary>
    /// Issues <c>ioctl(fd, request, arg)</c>, holding a reference on the descriptor for the call, and turns a
    /// failure into a <see cref="KernelException"/> naming <paramref name="requestName"/>, this path and the errno.
    /// </summary>
    /// <returns>The ioctl's non-negative result.</returns>
    internal unsafe int Ioctl(uint request, string requestName, void* arg)
    {
        int result = Interop.ioctl(this, request, arg);
        if (result < 0)
        {
            throw KernelErrors.Last("ioctl", $"{requestName} on {Path}");
        }

        return result;
    }

    /// <summary>Like <see cref="Ioctl"/>, but returns the errno instead of throwing (for calls where EINTR is an answer).</summary>
    internal unsafe int TryIoctl(uint request, void* arg, out Errno errno)
    {
        int result = Interop.ioctl(this, request, arg);
        errno = result < 0 ? (Errno)Marshal.GetLastPInvokeError() : 0;
        return result;
    }

    /// <inheritdoc/>
    protected override bool ReleaseHandle()
    {
        if (_lender is { } lender)
        {
            lender.DangerousRelease(); // the VMM's handle may close its descriptor now
            return true;
        }

        return !_owns || Interop.close((int)handle.ToInt64()) == 0;
    }
}
