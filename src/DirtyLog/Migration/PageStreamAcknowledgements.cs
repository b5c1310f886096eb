// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Threading;
using System.Threading.Tasks;
using static DirtyLog.Migration.PageStreamFormat;

namespace DirtyLog.Migration;

/// <summary>
/// The source's view of how far the destination has applied the page stream: it reads the acknowledgements a
/// <see cref="PageStreamReader"/> with <see cref="PageStreamReader.Acknowledgements"/> sends back after each round and
/// at the end, so that bandwidth and expected downtime are measured end to end, not at the source's send.
/// </summary>
/// <remarks>
/// <para>Run <see cref="RunAsync"/> once, on the connection's other direction; it ends when the destination closes it
/// or sends something that is not an acknowledgement (a <see cref="PageStreamException"/>, which every waiter sees).</para>
/// <para>Thread safety: every member may be called from any thread; waiters complete on the reading task's thread.</para>
/// </remarks>
public sealed class PageStreamAcknowledgements
{
    private readonly PipeReader _input;
    private readonly Lock _gate = new();
    private readonly List<(ulong Round, TaskCompletionSource<TimeSpan> Done)> _waiters = []; // under _gate
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private ulong _applied;      // the last round applied; EndAcknowledged once the end is; under _gate
    private long _bytes;
    private Exception? _failure; // under _gate
    private readonly TaskCompletionSource _accepted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<TimeSpan> _postCopyStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private string? _refusal;    // the destination's reason, once it refused; under _gate

    /// <summary>Creates the reader of the acknowledgements that arrive on <paramref name="input"/>.</summary>
    /// <param name="input">The connection's direction from the destination.</param>
    public PageStreamAcknowledgements(PipeReader input)
    {
        ArgumentNullException.ThrowIfNull(input);
        _input = input;
    }

    /// <summary>The last round the destination applied (0 before the first).</summary>
    public long AppliedRound
    {
        get
        {
            lock (_gate)
            {
                return _applied == EndAcknowledged ? long.MaxValue : (long)_applied;
            }
        }
    }

    /// <summary>Whether the destination applied the end record: every page is in its memory.</summary>
    public bool EndApplied
    {
        get
        {
            lock (_gate)
            {
                return _applied == EndAcknowledged;
            }
        }
    }

    /// <summary>Stream bytes the destination had read at its last acknowledgement.</summary>
    public long AppliedBytes => Interlocked.Read(ref _bytes);

    /// <summary>Reads acknowledgements until the destination closes its direction, or says post-copy started (its page requests follow: the reading stops there, just after it).</summary>
    /// <param name="cancellationToken">Stops reading.</param>
    /// <returns>A task that completes when the destination closed, or faults on a bad acknowledgement.</returns>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                ReadResult result = await _input.ReadAtLeastAsync(AckBytes, cancellationToken).ConfigureAwait(false);
                ReadOnlySequence<byte> buffer = result.Buffer;
                while (buffer.Length >= AckBytes)
                {
                    int used = Apply(buffer);
                    if (used == 0)
                    {
                        break; // a refusal whose reason has not all arrived
                    }

                    buffer = buffer.Slice(used);
                    if (Refusal is not null || _postCopyStarted.Task.IsCompleted)
                    {
                        _input.AdvanceTo(buffer.Start);
                        return; // the destination's last word: every waiter has its reason, or post-copy's requests follow
                    }
                }

                _input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    if (!buffer.IsEmpty)
                    {
                        throw new PageStreamException($"the acknowledgements ended in the middle of one ({buffer.Length} bytes)", AppliedBytes);
                    }

                    Fail(new PageStreamException("the destination closed its acknowledgements before acknowledging what is awaited", AppliedBytes));
                    return;
                }
            }
        }
        catch (Exception e)
        {
            Fail(e);
            throw;
        }
    }

    /// <summary>Waits until the destination has applied round <paramref name="round"/> (or the end).</summary>
    /// <param name="round">The round, from 1.</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>When it was applied, on this object's clock (from its creation).</returns>
    /// <exception cref="PageStreamException">The acknowledgements ended or were damaged first.</exception>
    public Task<TimeSpan> WaitForRoundAsync(long round, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(round, 1);
        return Wait((ulong)round, cancellationToken);
    }

    /// <summary>Waits until the destination has applied the end record.</summary>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>When it was applied, on this object's clock.</returns>
    /// <exception cref="PageStreamException">The acknowledgements ended or were damaged first.</exception>
    public Task<TimeSpan> WaitForEndAsync(CancellationToken cancellationToken) => Wait(EndAcknowledged, cancellationToken);

    /// <summary>This object's clock, on which <see cref="WaitForRoundAsync"/> reports.</summary>
    public TimeSpan Now => _clock.Elapsed;

    /// <summary>The destination's reason, once it refused the migration; <see langword="null"/> until then.</summary>
    internal string? Refusal
    {
        get
        {
            lock (_gate)
            {
                return _refusal;
            }
        }
    }

    /// <summary>What ended the acknowledgements, once they ended short of the end; <see langword="null"/> until then.</summary>
    internal Exception? Failure
    {
        get
        {
            lock (_gate)
            {
                return _failure;
            }
        }
    }

    /// <summary>The data connections the destination granted with its acceptance of the header (0: none; the control connection carries the pages).</summary>
    internal int GrantedDataConnections { get; private set; }

    /// <summary>The token the data connections present, from the acceptance.</summary>
    internal ulong DataConnectionToken { get; private set; }

    /// <summary>Whether the destination granted post-copy with its acceptance of the header.</summary>
    internal bool PostCopyGranted { get; private set; }

    /// <summary>Whether the destination said post-copy started (the guest runs there).</summary>
    internal bool PostCopyStarted => _postCopyStarted.Task.IsCompletedSuccessfully;

    /// <summary>Waits until the destination says post-copy started: the guest runs there; when, on this object's clock.</summary>
    internal Task<TimeSpan> WaitForPostCopyAsync(CancellationToken cancellationToken) => _postCopyStarted.Task.WaitAsync(cancellationToken);

    /// <summary>Waits until the destination accepted the stream's header (a migration session's handshake).</summary>
    internal Task WaitForAcceptanceAsync(CancellationToken cancellationToken) => _accepted.Task.WaitAsync(cancellationToken);

    private Task<TimeSpan> Wait(ulong round, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_applied >= round)
            {
                return Task.FromResult(_clock.Elapsed);
            }

            if (_failure is { } failure)
            {
                return Task.FromException<TimeSpan>(failure);
            }

            var done = new TaskCompletionSource<TimeSpan>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((round, done));
            return done.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Applies the acknowledgement at the start of <paramref name="bytes"/>.</summary>
    /// <returns>The bytes it took; 0 when it is a refusal whose reason is not all there yet.</returns>
    private int Apply(ReadOnlySequence<byte> bytes)
    {
        Span<byte> ack = stackalloc byte[AckBytes];
        bytes.Slice(0, AckBytes).CopyTo(ack);
        ulong round = BinaryPrimitives.ReadUInt64LittleEndian(ack[8..]);
        ulong last = BinaryPrimitives.ReadUInt64LittleEndian(ack[16..]);
        uint granted = BinaryPrimitives.ReadUInt32LittleEndian(ack[4..]);
        if (BinaryPrimitives.ReadUInt32LittleEndian(ack) != AckMagic || (granted != 0 && round != HeaderAccepted))
        {
            throw new PageStreamException("not a page stream acknowledgement", AppliedBytes);
        }

        if (round == PageStreamFormat.PostCopyStarted)
        {
            if (!PostCopyGranted)
            {
                throw new PageStreamException("the destination says post-copy started, but it was not granted", AppliedBytes);
            }

            Interlocked.Exchange(ref _bytes, (long)last); // the stream's bytes it read, as every acknowledgement says
            _postCopyStarted.TrySetResult(_clock.Elapsed);
            return AckBytes;
        }

        if (round == HeaderAccepted)
        {
            bool postCopy = (granted & PageStreamFormat.PostCopyGranted) != 0;
            granted &= ~PageStreamFormat.PostCopyGranted;
            if (postCopy && granted == 0)
            {
                throw new PageStreamException("the destination granted post-copy without a data connection", AppliedBytes);
            }

            PostCopyGranted = postCopy;
            if (granted > MaxDataConnections)
            {
                throw new PageStreamException($"the destination granted {granted} data connections (at most {MaxDataConnections})", AppliedBytes);
            }

            // Set before the acceptance is seen: a session reads them once it waited for it.
            GrantedDataConnections = (int)granted;
            DataConnectionToken = granted == 0 ? 0 : last; // a version-3 destination sends its bytes read here
            _accepted.TrySetResult();
            return AckBytes;
        }

        if (round == Refused)
        {
            // Hostile until checked: the length is bounded before anything is waited for, and the text must be UTF-8.
            if (last > MaxRefusalBytes)
            {
                throw new PageStreamException($"a refusal with a {last}-byte reason (at most {MaxRefusalBytes})", AppliedBytes);
            }

            if (bytes.Length < AckBytes + (long)last)
            {
                return 0;
            }

            string reason;
            try
            {
                reason = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes.Slice(AckBytes, (long)last).ToArray());
            }
            catch (System.Text.DecoderFallbackException)
            {
                throw new PageStreamException("a refusal whose reason is not UTF-8", AppliedBytes);
            }

            lock (_gate)
            {
                _refusal = reason;
            }

            Fail(new PageStreamException($"the destination refused the migration: {reason}", AppliedBytes));
            return AckBytes + (int)last;
        }

        long read = (long)last;
        TimeSpan now = _clock.Elapsed;
        lock (_gate)
        {
            if (round <= _applied)
            {
                throw new PageStreamException($"acknowledgement of round {round} after round {_applied}", read);
            }

            _applied = round;
            Interlocked.Exchange(ref _bytes, read);
            _waiters.RemoveAll(w =>
            {
                if (w.Round > round)
                {
                    return false;
                }

                w.Done.TrySetResult(now);
                return true;
            });
        }

        return AckBytes;
    }

    private void Fail(Exception failure)
    {
        lock (_gate)
        {
            _failure ??= failure;
            if (_accepted.TrySetException(_failure))
            {
                _ = _accepted.Task.Exception; // observed here: only a session's handshake awaits it, a plain reader never does
            }

            if (_postCopyStarted.TrySetException(_failure))
            {
                _ = _postCopyStarted.Task.Exception; // likewise: only a session that switched to post-copy awaits it
            }
            foreach ((_, TaskCompletionSource<TimeSpan> done) in _waiters)
            {
                done.TrySetException(failure);
            }

            _waiters.Clear();
        }
    }
}
