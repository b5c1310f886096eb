// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipelines;
using DirtyLog.Bitmaps;
using DirtyLog.Migration.PostCopy;

namespace DirtyLog.Migration.Sessions;

/// <summary>
/// A post-copy source's connections, run after run: at first the session's own (the control connection and the
/// data connections), after each recovery the new ones it opened, with the pages the destination said it lacks; and
/// the counts of every run together.
/// </summary>
/// <remarks>Thread safety: used by the session's task alone, between runs.</remarks>
internal sealed class PostCopySourceConnections(PipeReader requests, PipeWriter answers, IReadOnlyList<PipeWriter> push, IReadOnlyList<DirtyRun> pending) : IDisposable
{
    private readonly RecoveredConnections _owned = new();
    private uint _attempt;

    /// <summary>The destination's requests, on the control connection of this run.</summary>
    public PipeReader Requests { get; private set; } = requests;

    /// <summary>The answers, on its other direction.</summary>
    public PipeWriter Answers { get; private set; } = answers;

    /// <summary>This run's push connections.</summary>
    public IReadOnlyList<PipeWriter> Push { get; private set; } = push;

    /// <summary>What this run sends: the discard list at first; after a recovery, what the destination still lacks.</summary>
    public IReadOnlyList<DirtyRun> Pending { get; private set; } = pending;

    /// <summary>As many push connections as the switch had: the destination expects them all back.</summary>
    public int PushCount { get; } = push.Count;

    public ulong PagesAnswered { get; private set; }

    public ulong PagesPushed { get; private set; }

    public int Recoveries { get; private set; }

    /// <summary>A run ended (done or cut): its pages join the counts.</summary>
    public void Count(PostCopySource source)
    {
        PagesAnswered += (ulong)source.PagesAnswered;
        PagesPushed += (ulong)source.PagesPushed;
    }

    /// <summary>A new number for the next try: the destination takes only a try above every one before.</summary>
    public uint NextAttempt() => ++_attempt;

    /// <summary>Lets go of this run's connections: the first run's through <paramref name="first"/> (the session owns them), a recovery's here.</summary>
    public void Abandon(Action first)
    {
        if (Recoveries == 0)
        {
            first();
        }

        Dispose();
    }

    /// <summary>The new run's connections, opened by a recovery, and what it sends.</summary>
    public void Adopt(List<Stream> opened, PipeReader requests, PipeWriter answers, IReadOnlyList<PipeWriter> push, IReadOnlyList<DirtyRun> missing)
    {
        _owned.Take(opened);
        Requests = requests;
        Answers = answers;
        Push = push;
        Pending = missing;
        Recoveries++;
    }

    public void Dispose() => _owned.DisposeAll();
}
