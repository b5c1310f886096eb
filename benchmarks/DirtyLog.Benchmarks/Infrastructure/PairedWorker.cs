// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Threading;

namespace DirtyLog.Benchmarks.Infrastructure;

/// <summary>
/// Runs two pieces of work at once: one on the calling thread, one on a long-lived second thread. On a 2-core
/// machine this keeps both cores busy with work, with no thread created per invocation and no idle coordinator.
/// </summary>
internal sealed class PairedWorker : IDisposable
{
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _go = new(false);
    private readonly ManualResetEventSlim _done = new(false);
    private Action? _work;
    private volatile bool _stopping;

    public PairedWorker()
    {
        _thread = new Thread(Loop) { IsBackground = true, Name = "paired benchmark worker" };
        _thread.Start();
    }

    public void Run(Action mine, Action theirs)
    {
        _work = theirs;
        _done.Reset();
        _go.Set();
        mine();
        _done.Wait();
    }

    public void Dispose()
    {
        _stopping = true;
        _go.Set();
        _thread.Join();
        _go.Dispose();
        _done.Dispose();
    }

    private void Loop()
    {
        while (true)
        {
            _go.Wait();
            _go.Reset();
            if (_stopping)
            {
                return;
            }

            _work!();
            _done.Set();
        }
    }
}
