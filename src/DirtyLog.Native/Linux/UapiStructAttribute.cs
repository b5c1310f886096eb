// Licensed under the MIT License. See LICENSE in the repository root.

using System;

namespace DirtyLog.Native.Linux;

/// <summary>
/// Marks a struct that mirrors a kernel uapi struct of the same name (fields named as in C). The test suite
/// compiles a C file of <c>static_assert</c>s on its size and every field offset against the real header.
/// </summary>
[AttributeUsage(AttributeTargets.Struct, Inherited = false)]
internal sealed class UapiStructAttribute : Attribute
{
    public UapiStructAttribute(string header) => Header = header;

    /// <summary>The header that declares the struct, such as <c>linux/iommufd.h</c>.</summary>
    public string Header { get; }

    /// <summary>Only a leading part of the kernel struct is bound (such as <c>kvm_run</c>'s head): offsets are checked, not the size.</summary>
    public bool Partial { get; init; }
}
