// Licensed under the MIT License. See LICENSE in the repository root.

using System.Threading;

namespace DirtyLog.Native.Internal;

/// <summary>
/// Lets any number of threads use a resource without a lock while one thread retires it: each use is bracketed by
/// <see cref="TryEnter"/> and <see cref="Exit"/>; <see cref="Retire"/> refuses new uses and waits for those in
/// flight, after which the resource may be freed.
/// </summary>
/// <remarks>
/// One word: bit 31 says retired, the rest count uses in flight. Entering is one atomic add (full fence) before the
/// retired bit is tested, and retiring is one atomic OR (full fence) before the count is read, so either a user sees
/// the bit and backs out, or the retirer sees the user and waits for it: never both miss each other. Uses must be
/// short (a mark, a merge); the retirer spins.
/// </remarks>
internal struct RetireGate
{
    private const int Retired = int.MinValue;
    private int _state;

    /// <summary>Whether <see cref="Retire"/> has been called.</summary>
    public bool IsRetired => Volatile.Read(ref _state) < 0;

    /// <summary>Starts a use, unless retired.</summary>
    /// <returns>Whether the resource may be used; if so, call <see cref="Exit"/> after.</returns>
    public bool TryEnter()
    {
        if (Interlocked.Increment(ref _state) < 0)
        {
            Interlocked.Decrement(ref _state);
            return false;
        }

        return true;
    }

    /// <summary>Ends a use started by a successful <see cref="TryEnter"/>.</summary>
    public void Exit() => Interlocked.Decrement(ref _state);

    /// <summary>Refuses new uses and waits until the uses in flight have ended. Idempotent.</summary>
    public void Retire()
    {
        BeginRetire();
        WaitForUses();
    }

    /// <summary>Refuses new uses, without waiting.</summary>
    /// <returns>Whether uses were in flight at that moment (the caller may hurry them before <see cref="WaitForUses"/>).</returns>
    public bool BeginRetire() => (Interlocked.Or(ref _state, Retired) & int.MaxValue) != 0;

    /// <summary>Waits until the uses in flight have ended (after <see cref="BeginRetire"/>).</summary>
    public void WaitForUses()
    {
        var spin = new SpinWait();
        while ((Volatile.Read(ref _state) & int.MaxValue) != 0)
        {
            spin.SpinOnce();
        }
    }
}
