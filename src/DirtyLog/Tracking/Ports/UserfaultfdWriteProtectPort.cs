// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Runtime.Versioning;
using DirtyLog.Native;

namespace DirtyLog.Tracking.Ports;

/// <summary>The real <see cref="IWriteProtectPort"/>: a userfaultfd in asynchronous write-protect mode and this process's pagemap.</summary>
/// <remarks>Each <see cref="Arm"/> opens both, each <see cref="Disarm"/> closes them. Thread safety: one caller at a time.</remarks>
[SupportedOSPlatform("linux")]
public sealed class UserfaultfdWriteProtectPort : IWriteProtectPort
{
    private UserfaultfdContext? _uffd;
    private PagemapScanner? _scanner;

    /// <inheritdoc/>
    public string Name => "userfaultfd";

    /// <inheritdoc/>
    public void Arm(IReadOnlyList<(nint Start, ulong Length)> ranges)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        UserfaultfdContext uffd = UserfaultfdContext.CreateAsyncWriteProtect();
        PagemapScanner? scanner = null;
        try
        {
            scanner = PagemapScanner.OpenSelf();
            foreach ((nint start, ulong length) in ranges)
            {
                uffd.RegisterWriteProtect(start, length);
                uffd.WriteProtect(start, length, protect: true);
            }
        }
        catch
        {
            scanner?.Dispose();
            uffd.Dispose();
            throw;
        }

        Disarm();
        _uffd = uffd;
        _scanner = scanner;
    }

    /// <inheritdoc/>
    public void Disarm()
    {
        _scanner?.Dispose();
        _uffd?.Dispose();
        _scanner = null;
        _uffd = null;
    }

    /// <inheritdoc/>
    public int ScanWritten(ulong start, ulong limit, Span<PageRegion> regions, bool reprotect, out ulong walkEnd) =>
        (_scanner ?? throw new InvalidOperationException("The port is not armed.")).ScanWritten(start, limit, regions, reprotect, out walkEnd);
}
