// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Harvesting;

namespace DirtyLog.Migration.Sessions;

public sealed partial class MigrationSource
{
    private sealed partial class Run
    {
        /// <summary>
        /// Stop-copy: pause, the final harvest (with its deadline), the rest, the state sections, the hold if asked,
        /// and the end. <see cref="_paused"/> is set before the pause hook runs, so a pause that half happened is
        /// undone; <see cref="_endWritten"/> before the end's first byte, so no failure after it resumes the source.
        /// </summary>
        private async Task StopCopyAsync()
        {
            Report(MigrationPhase.StopCopy);
            Pace(0); // the guest is paused: the downtime is the bound now
            _pausedAt = _acks.Now;
            _paused = true;
            await _session._hooks.PauseAsync(Token).ConfigureAwait(false);
            (HarvestRound final, int retries) = Harvest(final: true);
            using (final)
            {
                _remaining = final.Pages;
                await SendAsync(final, MigrationPhase.StopCopy, retries, waitForApplied: false).ConfigureAwait(false);
            }

            _remaining = 0;
            await WriteStateAsync().ConfigureAwait(false);
            CheckRegionsUnchanged();
            Report(MigrationPhase.AwaitingDestination);
            _endWritten = true;
            await _writer.WriteEndAsync(Token).ConfigureAwait(false);
        }

        /// <summary>The state sections, checked and written; then the hold, when the policy asks for one.</summary>
        private async Task WriteStateAsync()
        {
            IReadOnlyList<MigrationStateSection> sections = await _session._hooks.SaveStateAsync(Token).ConfigureAwait(false)
                ?? throw new MigrationException(MigrationPhase.StopCopy, "the save-state hook returned no list of sections");
            var names = new List<string>(sections.Count);
            foreach (MigrationStateSection section in sections)
            {
                names.Add(CheckSection(section, names));
                byte[] payload = new byte[4 + section.Data.Length];
                BinaryPrimitives.WriteUInt32LittleEndian(payload, section.Version);
                section.Data.Span.CopyTo(payload.AsSpan(4));
                await _writer.WriteStateAsync(section.Name, payload, Token).ConfigureAwait(false);
            }

            _sections = names;
            if (Options.SwitchOver == SwitchOverPolicy.PauseBeforeSwitchOver)
            {
                Report(MigrationPhase.SwitchOverHeld);
                await _session._continue.Task.WaitAsync(Token).ConfigureAwait(false);
            }
        }

        /// <summary>
        /// After the end: the destination's word. It resumed: the migration is done. It refused: the source resumes.
        /// Anything else (the connection died, the answer timed out, a cancellation): unknown, and the guest stays paused.
        /// </summary>
        private async Task<MigrationOutcome> AwaitDestinationAsync()
        {
            try
            {
                TimeSpan resumed = await _acks.WaitForEndAsync(Token).WaitAsync(Options.AnswerTimeout, Token).ConfigureAwait(false);
                TimeSpan downtime = resumed - _pausedAt;
                MigrationTelemetry.Downtime(downtime);
                return Outcome(MigrationEnd.RunningOnDestination, null) with { Downtime = downtime };
            }
            catch (Exception e)
            {
                return await NoWordAsync(e).ConfigureAwait(false);
            }
        }

        /// <summary>The end (or the switch to post-copy) was sent and no resume came: refused, the source resumes; no answer, it stays paused.</summary>
        private async Task<MigrationOutcome> NoWordAsync(Exception e)
        {
            if (_acks.Refusal is not null)
            {
                MigrationException refused = Explain(e);
                return Outcome(MigrationEnd.RunningOnSource, await ResumeSourceAsync(refused).ConfigureAwait(false)) with { Downtime = _acks.Now - _pausedAt };
            }

            string why = e is TimeoutException ? $"no answer within {Options.AnswerTimeout.TotalSeconds:F0} s" : Explain(e).Message;
            return Outcome(MigrationEnd.Unknown, new MigrationException(MigrationPhase.AwaitingDestination,
                $"the end was sent and the destination's answer did not come ({why}): it may have resumed the guest, so the source stays paused", e));
        }

        /// <summary>After the switch-over: the source's memory digest, for the destination to check every page against.</summary>
        private async Task<MigrationOutcome> VerifyAsync(MigrationOutcome done)
        {
            if (!Options.SendMemoryDigest)
            {
                return done;
            }

            Report(MigrationPhase.Verifying);
            try
            {
                await _writer.WriteMemoryDigestAsync(CancellationToken.None).ConfigureAwait(false);
                return done with { Bytes = _writer.BytesWritten };
            }
            catch (Exception e) when (e is System.IO.IOException or System.Net.Sockets.SocketException or ObjectDisposedException or PageStreamException or InvalidOperationException)
            {
                // The guest runs on the destination regardless; it only could not check its pages against ours.
                return done with { Error = new MigrationException(MigrationPhase.Verifying, $"the memory digest could not be sent: {e.Message}", e) };
            }
        }

        private static string CheckSection(MigrationStateSection section, List<string> names)
        {
            if (section is null || string.IsNullOrEmpty(section.Name) || System.Text.Encoding.UTF8.GetByteCount(section.Name) > PageStreamFormat.MaxStateNameBytes)
            {
                throw new MigrationException(MigrationPhase.StopCopy, $"a state section needs a name of 1 to {PageStreamFormat.MaxStateNameBytes} UTF-8 bytes, not \"{section?.Name}\"");
            }

            if (section.Data.Length > PageStreamFormat.MaxStateBytes - 4)
            {
                throw new MigrationException(MigrationPhase.StopCopy, $"state section \"{section.Name}\" holds {section.Data.Length:N0} bytes, more than {PageStreamFormat.MaxStateBytes - 4:N0}");
            }

            if (names.Contains(section.Name))
            {
                throw new MigrationException(MigrationPhase.StopCopy, $"two state sections are named \"{section.Name}\"");
            }

            return section.Name;
        }
    }
}
