// Licensed under the MIT License. See LICENSE in the repository root.

using NUnit.Framework;

namespace DirtyLog.Tests.Infrastructure;

/// <summary>
/// The base of every test on the real /dev/kvm: the Kernel and Kvm categories (CI fails when /dev/kvm exists and one
/// of these did not run) and the assumption that ends them Inconclusive, saying why, on a machine without KVM.
/// </summary>
[Category("Kernel")]
[Category("Kvm")]
public abstract class KvmFixture
{
    [SetUp]
    public void RequireKvm() =>
        Assume.That(DirtyLog.Testing.KvmSystem.IsAvailable, $"{DirtyLog.Testing.KvmSystem.DevicePath} is missing: no KVM on this machine");
}
