// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using DirtyLog.Native;
using NUnit.Framework;

namespace DirtyLog.Tests.Native;

/// <summary>Memory DirtyLog maps is unmapped once: on dispose, or by its handle's finalizer when its owner leaked.</summary>
[TestFixture]
[Category("Unit")]
[NonParallelizable] // forces collections
public class MappingLifetimeTests
{
    private const ulong Length = 1UL << 20;

    [Test]
    public void ADisposedMappingIsGoneFromTheProcessAndItsAddressIsRefused()
    {
        var mapping = new AnonymousMapping(Length);
        nint address = mapping.Address;
        Assert.That(IsMapped(address), Is.True, "mapped while alive");
        mapping.Dispose();
        mapping.Dispose(); // twice is harmless
        Assert.Multiple(() =>
        {
            Assert.That(IsMapped(address), Is.False);
            Assert.That(() => mapping.Address, Throws.InstanceOf<ObjectDisposedException>());
        });
    }

    [Test]
    public void AMappingWhoseOwnerWasNeverDisposedIsUnmappedWhenCollected()
    {
        nint address = MapAndLeak();
        Assert.That(IsMapped(address), Is.True, "mapped while not yet collected");
        for (int i = 0; i < 10 && IsMapped(address); i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.That(IsMapped(address), Is.False, "the finalizer unmapped the leaked mapping");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static nint MapAndLeak()
    {
        var mapping = new AnonymousMapping(Length);
        mapping.WriteUInt64(0, 1); // touched, so it cannot pass unnoticed
        return mapping.Address;
    }

    /// <summary>Whether a line of /proc/self/maps covers <paramref name="address"/> (the kernel may merge neighbours).</summary>
    private static bool IsMapped(nint address)
    {
        ulong at = (ulong)address;
        return File.ReadLines("/proc/self/maps").Any(line =>
        {
            string[] bounds = line[..line.IndexOf(' ', StringComparison.Ordinal)].Split('-');
            ulong start = ulong.Parse(bounds[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            ulong end = ulong.Parse(bounds[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            return at >= start && at < end;
        });
    }
}
