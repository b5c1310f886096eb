// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Migration;

/// <summary>
/// Where a page stream's readers stand, control and data connections: the round the control connection began (or its
/// end), and the rounds each data connection applied its share of (or its end). Data connections wait here for a
/// round's begin, the control connection for every share of a round and for every end; the first failure is every
/// waiter's.
/// </summary>
/// <remarks>
/// Thread safety: every member from any thread. One lock orders every change; each change completes the signal the
/// waiters hold and replaces it (an async condition variable), so a waiter re-checks its condition under the lock
/// and never misses a change. The lock also carries the happens-before the readers need: what the control reader did
/// before a round's begin (regions added, removed) is seen by a data connection that waited for it, and what a data
/// connection applied before its round end is seen by the control reader that waited for it.
/// </remarks>
internal sealed class DataConnectionGate(int connections)
{
    private readonly Lock _lock = new();
    private readonly long[] _finished = new long[connections]; // per data connection: the last round it applied its share of
    private readonly bool[] _ended = new bool[connections];
    private long _begun;      // the last round the control connection began
    private bool _ending;     // the control connection read the end record
    private Exception? _failure;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Raised once, on the failing thread, when the first failure arrives.</summary>
    public event Action? Failed;

    /// <summary>The first failure, or <see langword="null"/>.</summary>
    public Exception? Failure
    {
        get
        {
            lock (_lock)
            {
                return _failure;
            }
        }
    }

    /// <summary>The control connection began <paramref name="round"/>.</summary>
    public void Begin(long round) => Change(() => _begun = round);

    /// <summary>The control connection read the end: the data connections' end records come next.</summary>
    public void BeginEnd() => Change(() => _ending = true);

    /// <summary>Data connection <paramref name="connection"/> applied its share of <paramref name="round"/>.</summary>
    public void Finished(int connection, long round) => Change(() => _finished[connection] = round);

    /// <summary>Data connection <paramref name="connection"/> read its end record, and it checked out.</summary>
    public void Ended(int connection) => Change(() => _ended[connection] = true);

    /// <summary>A reader failed: every wait, now and later, fails with it.</summary>
    public void Fail(Exception failure)
    {
        bool first = false;
        Change(() =>
        {
            first = _failure is null;
            _failure ??= failure;
        });
        if (first)
        {
            Failed?.Invoke();
        }
    }

    /// <summary>A data connection waits until the control connection began <paramref name="round"/> or ended.</summary>
    /// <returns>Whether it ended (and the round will not come).</returns>
    public async Task<bool> WaitToBeginAsync(long round, CancellationToken cancellationToken)
    {
        await WaitAsync(() => _begun >= round || _ending, cancellationToken).ConfigureAwait(false);
        lock (_lock)
        {
            return _begun < round;
        }
    }

    /// <summary>The control connection waits until every data connection applied its share of <paramref name="round"/>.</summary>
    public Task WaitForRoundAsync(long round, CancellationToken cancellationToken) =>
        WaitAsync(() => Array.TrueForAll(_finished, f => f >= round), cancellationToken);

    /// <summary>The control connection waits until every data connection's end record checked out.</summary>
    public Task WaitForEndsAsync(CancellationToken cancellationToken) => WaitAsync(() => Array.TrueForAll(_ended, e => e), cancellationToken);

    private async Task WaitAsync(Func<bool> ready, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                if (_failure is { } failure)
                {
                    throw new FailedException(failure);
                }

                if (ready())
                {
                    return;
                }

                changed = _changed.Task;
            }

            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private void Change(Action change)
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            change();
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    /// <summary>A wait ended by another reader's failure (its <see cref="Exception.InnerException"/>).</summary>
    public sealed class FailedException(Exception failure) : Exception(failure.Message, failure);
}
