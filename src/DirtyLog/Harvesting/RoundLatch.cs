// Licensed under the MIT License. See LICENSE in the repository root.

using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Harvesting;

/// <summary>Counts a round's workers down; late workers may still count down after the round gave up on them.</summary>
/// <remarks>Nothing to dispose, unlike a <see cref="CountdownEvent"/>, so a late signal can never hit a disposed event.</remarks>
internal sealed class RoundLatch
{
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _remaining;

    public RoundLatch(int count)
    {
        _remaining = count;
        if (count == 0)
        {
            _done.SetResult();
        }
    }

    public Task Done => _done.Task;

    public void Signal()
    {
        if (Interlocked.Decrement(ref _remaining) == 0)
        {
            _done.TrySetResult();
        }
    }
}
