// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Pipelines;
using System.Threading.Tasks;

namespace DirtyLog.Migration.Sessions;

public sealed partial class MigrationSource
{
    private sealed partial class Run
    {
        private readonly List<Stream> _dataConnections = []; // the session's: opened here, disposed here
        private readonly List<RateLimitedStream> _dataWires = [];
        private readonly List<PipeWriter> _dataOutputs = [];

        /// <summary>
        /// After the destination accepted the header: the data connections it granted (at most those asked), opened by
        /// the factory and told their index and the destination's token. None granted: the control connection carries the pages.
        /// </summary>
        private async Task OpenDataConnectionsAsync()
        {
            int granted = _acks.GrantedDataConnections;
            if (granted == 0)
            {
                return;
            }

            if (granted > Options.DataConnections)
            {
                throw new MigrationException(MigrationPhase.Handshake, $"the destination granted {granted} data connections; {Options.DataConnections} were asked for");
            }

            for (int i = 0; i < granted; i++)
            {
                Stream connection;
                try
                {
                    connection = await Options.ConnectionFactory!.OpenAsync(Token).AsTask().WaitAsync(Options.HandshakeTimeout, Token).ConfigureAwait(false);
                }
                catch (TimeoutException e)
                {
                    throw new MigrationException(MigrationPhase.Handshake, $"data connection {i} of {granted} did not open within {Options.HandshakeTimeout.TotalSeconds:F0} s", e);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    throw new MigrationException(MigrationPhase.Handshake, $"data connection {i} of {granted} could not be opened: {e.Message}", e);
                }

                if (connection is null || !connection.CanWrite)
                {
                    connection?.Dispose();
                    throw new MigrationException(MigrationPhase.Handshake, $"the connection factory gave data connection {i} {(connection is null ? "as null" : "as a stream that cannot be written")}");
                }

                _dataConnections.Add(connection);
                var wire = new RateLimitedStream(connection);
                _dataWires.Add(wire);
                var output = PipeWriter.Create(wire, new StreamPipeWriterOptions(minimumBufferSize: PageStreamWriter.RecommendedBufferSize, leaveOpen: true));
                _dataOutputs.Add(output);
                // Its header at once: the destination checks each connection before it accepts the next.
                await _writer.AddDataConnectionAsync(output, granted, _acks.DataConnectionToken, Token).ConfigureAwait(false);
            }
        }

        /// <summary>The bandwidth cap, shared equally by the connections that carry pages; 0 lifts it.</summary>
        private void Pace(long bytesPerSecond)
        {
            _wire.Limit = bytesPerSecond;
            foreach (RateLimitedStream wire in _dataWires)
            {
                wire.Limit = bytesPerSecond == 0 ? 0 : Math.Max(1, bytesPerSecond / _dataWires.Count);
            }
        }

        private void DisposeDataConnections()
        {
            foreach (RateLimitedStream wire in _dataWires)
            {
                wire.Dispose();
            }

            foreach (Stream connection in _dataConnections)
            {
                connection.Dispose();
            }
        }
    }
}
