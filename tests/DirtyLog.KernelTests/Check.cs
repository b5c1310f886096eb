// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;

namespace DirtyLog.KernelTests;

/// <summary>Assertions for the kernel tests (no test framework runs inside the VM).</summary>
internal static class Check
{
    public static void That(bool condition, string what)
    {
        if (!condition)
        {
            throw new InvalidOperationException(what);
        }
    }

    public static void Equal<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
        {
            throw new InvalidOperationException($"{what}: expected {expected}, got {actual}");
        }
    }

    /// <summary>Two page sets, equal page for page; the message names the first pages that differ.</summary>
    public static void SamePages(IReadOnlySet<ulong> expected, IReadOnlySet<ulong> actual, string what)
    {
        if (!expected.SetEquals(actual))
        {
            string missing = string.Join(", ", expected.Except(actual).Order().Take(5).Select(p => $"0x{p:x}"));
            string extra = string.Join(", ", actual.Except(expected).Order().Take(5).Select(p => $"0x{p:x}"));
            throw new InvalidOperationException($"{what}: {expected.Count} pages expected, {actual.Count} reported; missing [{missing}], extra [{extra}]");
        }
    }

    public static TException Throws<TException>(Action action, string what)
        where TException : Exception
    {
        try
        {
            action();
        }
        catch (TException e)
        {
            return e;
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"{what}: {typeof(TException).Name} expected, {e.GetType().Name} thrown: {e.Message}");
        }

        throw new InvalidOperationException($"{what}: {typeof(TException).Name} expected, nothing thrown");
    }
}
