// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using DirtyLog.Harvesting;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>What the sample migrates and how fast its writers dirty memory.</summary>
internal sealed record MigrationOptions
{
    /// <summary>Guest RAM the vCPU writes, bytes.</summary>
    public ulong GuestBytes { get; init; } = 64UL << 20;

    /// <summary>Device memory after it (DMA and the emulated in-VMM device write there too), bytes.</summary>
    public ulong DeviceBytes { get; init; } = 16UL << 20;

    /// <summary>Pages each writer dirties per second.</summary>
    public int PagesPerSecond { get; init; } = 20_000;

    /// <summary>The longest acceptable stop-copy.</summary>
    public TimeSpan DowntimeLimit { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>Use simulated vCPU threads even where /dev/kvm exists.</summary>
    public bool NoKvm { get; init; }

    /// <summary>Where to draw the rounds as a PNG chart (dirty pages and each tracker's harvest latency), if anywhere.</summary>
    public string? ChartPath { get; init; }

    /// <summary>Where to write the rounds as CSV, if anywhere.</summary>
    public string? CsvPath { get; init; }

    /// <summary>Make nic-b's dirty logger fail now and then (a sticky firmware error, as mlx5 reports EIO).</summary>
    public bool InjectDeviceFaults { get; init; }

    /// <summary>What a round does when nic-b's tracker fails.</summary>
    public TrackerFaultPolicy DevicePolicy { get; init; } = TrackerFaultPolicy.MarkCoverageDirty;

    /// <summary>Seed of the writers.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>The guest's working set, bytes from 1 MiB; 0 for all of RAM above 1 MiB.</summary>
    public ulong WorkingSetBytes { get; init; }

    /// <summary>How long the guest runs before the migration starts.</summary>
    public TimeSpan Warmup { get; init; }

    /// <summary>
    /// Entries of the vCPU's KVM dirty ring (a power of two), 0 for KVM's dirty bitmap: the ring is reaped every
    /// <see cref="RingReapInterval"/> and by the run loop on a ring-full exit.
    /// </summary>
    public uint DirtyRingEntries { get; init; }

    /// <summary>The ring reaper's cadence.</summary>
    public TimeSpan RingReapInterval { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// Past the first round whose dirty set fits the downtime limit, copy on while each round's dirty set is at most this
    /// fraction of the previous one's (<see cref="DirtyLog.Migration.PreCopyOptions.KeepCopyingWhileShrinkingTo"/>);
    /// 0 switches over at the first fit, as QEMU.
    /// </summary>
    public double KeepCopyingWhileShrinkingTo { get; init; } = 0.6;

    /// <summary>Only the vCPU writes (no emulated devices): the guest alone, as in the comparison with QEMU.</summary>
    public bool VcpuOnly { get; init; }

    /// <summary>
    /// Where to keep a snapshot chain of the source while it migrates (a base before the migration, then one diff of
    /// every page the migration's rounds carried, at the switch-over), or <see langword="null"/> for none.
    /// </summary>
    public string? SnapshotDirectory { get; init; }

    /// <summary>This side's TLS certificate (PEM), or <see langword="null"/> for a plain connection.</summary>
    public string? TlsCertificateFile { get; init; }

    /// <summary>Its private key (PEM).</summary>
    public string? TlsKeyFile { get; init; }

    /// <summary>The CA (PEM) whose certificates this side trusts for its peer's.</summary>
    public string? TlsCaFile { get; init; }

    /// <summary>Destination: the source subjects allowed (for example <c>CN=source-1</c>).</summary>
    public System.Collections.Generic.IReadOnlyList<string> TlsAllow { get; init; } = [];

    /// <summary>Source: the name the destination's certificate must carry (by default the host connected to).</summary>
    public string? TlsServerName { get; init; }

    /// <summary>Destination: listen on every address without TLS (anyone who reaches the port can write a guest).</summary>
    public bool Insecure { get; init; }

    /// <summary>
    /// Source: the data connections the pages go over besides the control connection (0: the control connection
    /// carries them). Destination: the most it grants.
    /// </summary>
    public int Connections { get; init; }

    /// <summary>
    /// Source: switch to post-copy once pre-copy stops converging (needs <see cref="Connections"/> of at least 1).
    /// Destination: grant post-copy to a source that offers it.
    /// </summary>
    public bool PostCopy { get; init; }

    /// <summary>
    /// Source: slow the KVM guest's vCPU when pre-copy stalls (auto-converge, as QEMU's cpu-throttle: 20%, then 10
    /// points more at each stall, to 99%) instead of switching over anyway.
    /// </summary>
    public bool Throttle { get; init; }

    /// <summary>In one process: the directory of the certificates <c>certs</c> wrote, for mutual TLS on every connection; <see langword="null"/> for plain TCP.</summary>
    public string? TlsDirectory { get; init; }

    /// <summary>Whether TLS is asked for.</summary>
    public bool UsesTls => TlsCertificateFile is not null;
}
