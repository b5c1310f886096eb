// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using DirtyLog.Migration.Sessions;
using NUnit.Framework;

namespace DirtyLog.Tests.Documentation;

/// <summary>
/// The live-migration guide shows the two hook interfaces as a VMM implements them; <c>GuideHookInterfaces.cs</c>
/// holds the guide's lines, and each shown interface must declare exactly the members (names, parameter and return types) of the
/// library's, so that the guide cannot drift from the API.
/// </summary>
[TestFixture]
[Category("Unit")]
public class HookInterfaceTests
{
    [TestCase(typeof(Shown.IMigrationSourceHooks), typeof(IMigrationSourceHooks))]
    [TestCase(typeof(Shown.IMigrationDestinationHooks), typeof(IMigrationDestinationHooks))]
    public void TheGuidesInterfaceHasTheLibrarysMembers(Type shown, Type library) =>
        Assert.That(Signatures(shown), Is.EquivalentTo(Signatures(library)), $"the guide's {shown.Name} against {library.FullName}");

    private static IEnumerable<string> Signatures(Type type) =>
        type.GetMethods(BindingFlags.Public | BindingFlags.Instance)
            .Select(m => $"{m.ReturnType} {m.Name}({string.Join(", ", m.GetParameters().Select(p => $"{p.ParameterType} {p.Name}"))})");
}
