// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Runtime.InteropServices;

namespace DirtyLog.Native;

/// <summary>A kernel call failed. The message names the call, the request (an ioctl's kernel name) and the errno.</summary>
/// <remarks>
/// <para>Every failing system call in DirtyLog surfaces as this one type, so callers can switch on <see cref="Errno"/>.</para>
/// <para>Thread safety: immutable once thrown; safe to share between threads.</para>
/// </remarks>
public sealed class KernelException : IOException
{
    /// <summary>Creates the exception for a failed call.</summary>
    /// <param name="call">The system call or operation, such as <c>ioctl</c> or <c>open</c>.</param>
    /// <param name="request">What was asked: the ioctl's kernel name (<c>IOMMU_HWPT_GET_DIRTY_BITMAP</c>) or a path.</param>
    /// <param name="errno">The errno value.</param>
    public KernelException(string call, string request, Errno errno)
        : base(FormatMessage(call, request, errno))
    {
        Call = call;
        Request = request;
        Errno = errno;
        HResult = (int)errno;
    }

    /// <summary>Creates an exception with a message only (for serialisers and tests).</summary>
    public KernelException()
        : this("unknown", "unknown", 0)
    {
    }

    /// <summary>Creates an exception with a message only.</summary>
    /// <param name="message">The message.</param>
    public KernelException(string message)
        : base(message)
    {
        Call = "unknown";
        Request = "unknown";
    }

    /// <summary>Creates an exception with a message and an inner exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public KernelException(string message, Exception innerException)
        : base(message, innerException)
    {
        Call = "unknown";
        Request = "unknown";
    }

    /// <summary>The system call or operation that failed.</summary>
    public string Call { get; }

    /// <summary>The ioctl's kernel name or the path involved.</summary>
    public string Request { get; }

    /// <summary>The errno value.</summary>
    public Errno Errno { get; }

    /// <summary>The symbolic errno name, such as <c>EINVAL</c>, or <c>errno N</c> for a value not named in <see cref="Native.Errno"/>.</summary>
    public string ErrnoName => NameOf(Errno);

    private static string NameOf(Errno errno) => Enum.IsDefined(errno) ? errno.ToString() : $"errno {(int)errno}";

    private static string FormatMessage(string call, string request, Errno errno) =>
        $"{call} {request} failed: {NameOf(errno)} ({(int)errno}): {Marshal.GetPInvokeErrorMessage((int)errno)}";
}
