// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Migration.PostCopy;

/// <summary>
/// Post-copy's bulk loops (the source's push, the destination's installing of pages) on threads of their own, with
/// blocking waits on their pipes. On the thread pool, a loop whose pipe never makes it wait (loopback, a blocking
/// socket) holds its pool thread for the whole push: two such loops took both pool threads of a 2-core machine, and
/// the destination's requests, which go out on the pool, waited behind them until the push ended (270 ms for the
/// first request, measured with the sample's KVM guest). On threads of their own they leave the pool to the requests.
/// </summary>
/// <remarks>Thread safety: stateless; every member may be called from any thread.</remarks>
internal static class PostCopyThreads
{
    /// <summary>Runs <paramref name="work"/> on a new background thread; its failure cancels <paramref name="failed"/>.</summary>
    /// <returns>A task that ends as the work does: completed, cancelled (an <see cref="OperationCanceledException"/>) or faulted.</returns>
    public static Task Run(Action work, string name, CancellationTokenSource failed)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                work();
                done.TrySetResult();
            }
            catch (Exception e)
            {
                Cancel(failed); // one loop's failure is post-copy's
                if (e is OperationCanceledException cancelled)
                {
                    done.TrySetCanceled(cancelled.CancellationToken);
                }
                else
                {
                    done.TrySetException(e);
                }
            }
        })
        { IsBackground = true, Name = name };
        thread.Start();
        return done.Task;
    }

    /// <summary><see cref="PipeReader.ReadAtLeastAsync"/>, waited for on this thread.</summary>
    public static ReadResult ReadAtLeast(PipeReader input, int minimumSize, CancellationToken cancellationToken)
    {
        ValueTask<ReadResult> read = input.ReadAtLeastAsync(minimumSize, cancellationToken);
        return read.IsCompletedSuccessfully ? read.Result : read.AsTask().GetAwaiter().GetResult();
    }

    /// <summary><see cref="PipeWriter.FlushAsync"/>, waited for on this thread.</summary>
    public static FlushResult Flush(PipeWriter output, CancellationToken cancellationToken)
    {
        ValueTask<FlushResult> flush = output.FlushAsync(cancellationToken);
        return flush.IsCompletedSuccessfully ? flush.Result : flush.AsTask().GetAwaiter().GetResult();
    }

    private static void Cancel(CancellationTokenSource failed)
    {
        try
        {
            failed.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The run is over already: nothing is left to stop.
        }
    }
}
