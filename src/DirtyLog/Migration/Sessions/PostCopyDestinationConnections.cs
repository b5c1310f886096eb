// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipelines;

namespace DirtyLog.Migration.Sessions;

/// <summary>
/// A post-copy destination's connections, run after run: at first the session's own (the control connection and
/// the data connections), after each recovery those the source opened again.
/// </summary>
/// <remarks>Thread safety: used by the session's task alone, between runs.</remarks>
internal sealed class PostCopyDestinationConnections(PipeWriter requests, PipeReader answers, IReadOnlyList<PipeReader> push) : IDisposable
{
    private readonly RecoveredConnections _owned = new();

    /// <summary>The requests go out on this run's control connection.</summary>
    public PipeWriter Requests { get; private set; } = requests;

    /// <summary>The answers come back on its other direction.</summary>
    public PipeReader Answers { get; private set; } = answers;

    /// <summary>This run's push connections.</summary>
    public IReadOnlyList<PipeReader> Push { get; private set; } = push;

    /// <summary>As many push connections as the switch had: a recovery brings them all back.</summary>
    public int PushCount { get; } = push.Count;

    /// <summary>How many recoveries carried post-copy on.</summary>
    public int Recoveries { get; private set; }

    /// <summary>Whether this run's connections are a recovery's (the first run's are the session's to let go).</summary>
    public bool Recovered => Recoveries > 0;

    /// <summary>A recovery's connections, and the pipes over them.</summary>
    public void Adopt(List<Stream> opened, PipeWriter requests, PipeReader answers, IReadOnlyList<PipeReader> push)
    {
        _owned.Take(opened);
        Requests = requests;
        Answers = answers;
        Push = push;
        Recoveries++;
    }

    /// <summary>Disposes a recovery's connections (a blocked read returns).</summary>
    public void Dispose() => _owned.DisposeAll();
}
