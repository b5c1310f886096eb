// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Runtime.InteropServices;
using System.Text;

namespace DirtyLog.Native;

/// <summary>A Linux file descriptor owned by DirtyLog, closed exactly once when released.</summary>
/// <remarks>Calls through it take a reference for their duration, so a concurrent dispose cannot close a descriptor in use.</remarks>
public sealed class FileDescriptorHandle : SafeHandle
{
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

    /// <summary>Takes ownership of a descriptor a kernel call returned (a VM or vCPU fd).</summary>
    /// <param name="fd">The descriptor.</param>
    /// <param name="path">What it is, for error messages.</param>
    /// <returns>The owning handle.</returns>
    internal static FileDescriptorHandle Adopt(int fd, string path)
    {
        var handle = new FileDescriptorHandle { Path = path };
        handle.SetHandle(new IntPtr(fd));
        return handle;
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
    protected override bool ReleaseHandle() => Interop.close((int)handle.ToInt64()) == 0;
}
