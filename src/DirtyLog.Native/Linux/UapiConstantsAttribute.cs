// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Native.Linux;

/// <summary>
/// Marks a class whose constants mirror kernel uapi constants of the same names (ioctl numbers, flags).
/// The test suite checks every one with a <c>static_assert</c> against the real header.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
internal sealed class UapiConstantsAttribute : Attribute
{
    public UapiConstantsAttribute(string header) => Header = header;

    /// <summary>The header that defines the constants.</summary>
    public string Header { get; }
}
