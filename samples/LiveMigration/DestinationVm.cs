// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.Threading;
using DirtyLog.Memory;
using DirtyLog.Migration;
using DirtyLog.Native;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// The destination: a VM the sample's VMM creates with the source's memory layout, whose memory the page stream
/// fills, and whose vCPU resumes from the state the stream carried, the moment the stream ends. Where /dev/kvm is
/// missing it is memory only.
/// </summary>
/// <remarks>Not thread-safe: the migration drives it from one thread at a time.</remarks>
internal sealed class DestinationVm : IDisposable
{
    private readonly SampleVmm? _vmm;
    private readonly AnonymousMapping? _memoryOnly;
    private readonly CancellationTokenSource _pause = new();
    private Thread? _vcpu;
    private Exception? _vcpuFailure;

    public DestinationVm(MigrationOptions options, bool kvm)
    {
        ulong total = options.GuestBytes + options.DeviceBytes;
        if (kvm)
        {
            _vmm = new SampleVmm(total);
            _vmm.SetSlot(0, 0, options.GuestBytes, logDirtyPages: false);
            _vmm.SetSlot(1, options.GuestBytes, options.DeviceBytes, logDirtyPages: false);
            Memory = new GuestMemoryView(_vmm.Memory, total);
        }
        else
        {
            _memoryOnly = new AnonymousMapping(total);
            Memory = new GuestMemoryView(_memoryOnly.Address, total);
        }
    }

    /// <summary>Guest memory, as the stream fills it.</summary>
    public GuestMemoryView Memory { get; }

    /// <summary>When the vCPU was resumed (a <see cref="Stopwatch"/> timestamp), 0 if it was not.</summary>
    public long ResumedAt { get; private set; }

    /// <summary>Serial bytes (guest passes) written here.</summary>
    public long Passes => _vmm?.SerialBytes ?? 0;

    /// <summary>Resumes the vCPU from the state the stream carried: called the moment the stream ends.</summary>
    /// <returns>Whether a vCPU resumed (a KVM guest with its state in the stream).</returns>
    public bool Resume(PageStreamSummary atEnd, BootGuest? guest) =>
        atEnd.States.TryGetValue("vcpu0", out ReadOnlyMemory<byte> state) && Resume(state, guest);

    /// <summary>Resumes the vCPU from its saved state.</summary>
    /// <returns>Whether a vCPU resumed (a KVM guest).</returns>
    public bool Resume(ReadOnlyMemory<byte> state, BootGuest? guest)
    {
        if (_vmm is null || guest is null)
        {
            return false;
        }

        _vmm.RestoreVcpuState(state.Span);
        _vcpu = new Thread(() =>
        {
            try
            {
                _vmm.RunUntilPaused(_pause.Token);
            }
            catch (Exception e)
            {
                _vcpuFailure = e;
            }
        })
        { IsBackground = true, Name = "destination vcpu0" };
        ResumedAt = Stopwatch.GetTimestamp();
        _vcpu.Start();
        return true;
    }

    /// <summary>Lets the resumed guest run until it completed <paramref name="passes"/> more passes (or the time is up), then stops it.</summary>
    /// <returns>The guest's passes here.</returns>
    public long RunThenPause(int passes, TimeSpan atMost)
    {
        if (_vcpu is null)
        {
            return 0;
        }

        long target = Passes + passes;
        SpinWait.SpinUntil(() => Passes >= target || !_vcpu.IsAlive, atMost);
        _pause.Cancel();
        _vcpu.Join();
        if (_vcpuFailure is { } failure)
        {
            throw new InvalidOperationException($"the destination's vCPU failed: {failure.Message}", failure);
        }

        return Passes;
    }

    public void Dispose()
    {
        _pause.Cancel();
        _vcpu?.Join();
        _vmm?.Dispose();
        _memoryOnly?.Dispose();
        _pause.Dispose();
    }
}
