// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Testing;
using DirtyLog.Harvesting;
using DirtyLog.Mapping;
using DirtyLog.Migration;
using DirtyLog.Native;
using DirtyLog.Tracking;
using DirtyLog.Tracking.Ports;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// The source VM: a real KVM guest (or simulated vCPU threads where /dev/kvm is missing), two emulated DMA devices
/// behind the emulated IOMMU (one with its own dirty logger, one relying on the IOMMU's dirty bits), an emulated
/// device in this process whose writes userfaultfd sees, every tracker in one parallel harvester.
/// </summary>
internal sealed class SourceVm : IDisposable
{
    private const ulong IovaBase = 1UL << 32;

    private readonly MigrationOptions _options;
    private readonly SampleVmm? _vmm;          // the sample's own VMM: its VM, memslots, vCPU and run loop
    private readonly FileDescriptorHandle? _vmHandle; // DirtyLog's borrow of the VMM's VM descriptor
    private readonly KvmVm? _vm;
    private readonly KvmDirtyRing? _ring;
    private readonly KvmDirtyRingTracker? _ringTracker;
    private readonly AnonymousMapping? _simulatedRam;
    private readonly EmulatedTracker? _simulatedVcpuTracker;
    private readonly EmulatedGuestMemory _dmaMemory;
    private readonly EmulatedDmaDevice _iommuDevice;
    private readonly EmulatedDmaDevice _loggingDevice;
    private readonly List<IDisposable> _owned = [];
    private readonly List<Thread> _writers = [];
    private CancellationTokenSource _vcpuPause = new(); // replaced on each resume of the vCPU alone
    private Thread? _vcpu;
    private volatile bool _stop;

    public SourceVm(MigrationOptions options)
    {
        _options = options;
        ulong total = options.GuestBytes + options.DeviceBytes;
        Shared = new SparseDirtyBitmap(40);
        // The first round is no slower than the others; KVM pages are re-protected chunk by chunk just before they are sent.
        Harvester = new ParallelHarvester(Shared, new HarvesterOptions { ReadOnStart = true, ClearBeforeSend = true });
        UsesKvm = !options.NoKvm && File.Exists("/dev/kvm");
        IDirtyTracker vcpuTracker;
        if (UsesKvm)
        {
            // The VMM creates and owns everything; DirtyLog borrows the VM descriptor and learns the slots from it.
            uint ring = options.DirtyRingEntries;
            _vmm = new SampleVmm(total, manualProtect: ring == 0, ringEntries: ring);
            _vmm.SetSlot(0, 0, options.GuestBytes, logDirtyPages: false);
            _vmm.SetSlot(1, options.GuestBytes, options.DeviceBytes, logDirtyPages: false);
            Guest = GuestFor(options, _vmm.TscKhz);
            _vmm.Boot(Guest.Sector());
            Memory = new GuestMemoryView(_vmm.Memory, total);
            _vmHandle = FileDescriptorHandle.Borrow(_vmm.Vm, "sample-vm");
            _vm = KvmVm.FromHandle(_vmHandle, manualDirtyLogProtect: ring == 0, dirtyRingEntries: ring);
            if (ring != 0)
            {
                using FileDescriptorHandle vcpuHandle = FileDescriptorHandle.Borrow(_vmm.Vcpu, "sample-vcpu0");
                _ring = KvmDirtyRing.Map(vcpuHandle, ring); // the mapping outlives the borrow
            }

            var slots = new KvmVmPort(_vm, _ring is null ? null : [_ring], DirtyLoggingControl.ByDirtyLog);
            slots.AddSlot(new KvmMemorySlot(0, 0, options.GuestBytes, _vmm.HostAddress(0), LogDirtyPages: false));
            slots.AddSlot(new KvmMemorySlot(1, options.GuestBytes, options.DeviceBytes, _vmm.HostAddress(options.GuestBytes), LogDirtyPages: false));

            // The vCPU writes RAM; VMM threads, device memory. A ring is reaped at a cadence and by the run loop when full.
            vcpuTracker = ring == 0
                ? Own(new KvmDirtyLogTracker(slots, 0, "kvm-log"))
                : (_ringTracker = Own(new KvmDirtyRingTracker(slots, "kvm-ring", options.RingReapInterval)));
        }
        else
        {
            _simulatedRam = new AnonymousMapping(total);
            Memory = new GuestMemoryView(_simulatedRam.Address, total);
            _simulatedVcpuTracker = new EmulatedTracker("simulated-vcpus", new AddressRange(0, options.GuestBytes));
            vcpuTracker = Own(_simulatedVcpuTracker);
        }

        // Two devices behind the emulated IOMMU, writing into the same memory as the vCPU.
        _dmaMemory = EmulatedGuestMemory.Over(Memory);
        var iommu = new EmulatedIommu(_dmaMemory);
        var correlator = new Correlator(Shared);
        uint ioasA = iommu.AllocateIoas(), ioasB = iommu.AllocateIoas();
        EmulatedHwpt hwptA = iommu.AllocateHwpt(ioasA, dirtyTracking: true);
        _iommuDevice = Own(new EmulatedDmaDevice(hwptA, supportsLogging: false, name: "nic-a"));
        _loggingDevice = Own(new EmulatedDmaDevice(iommu.AllocateHwpt(ioasB, dirtyTracking: false), DeviceDirtyLogLimits.Mlx5, name: "nic-b"));
        IoAddressSpace spaceA = correlator.AddAddressSpace(ioasA, new EmulatedIoMapBackend(iommu, ioasA, 4096));
        IoAddressSpace spaceB = correlator.AddAddressSpace(ioasB, new EmulatedIoMapBackend(iommu, ioasB, 4096));
        var iommuTracker = Own(new IommuTracker(hwptA, name: "iommu(nic-a)"));
        var deviceTracker = Own(new DeviceTracker(_loggingDevice, name: "device(nic-b)"));
        spaceA.Attach(iommuTracker);
        spaceB.Attach(deviceTracker);
        spaceA.Map(IovaBase, 0, total);
        spaceB.Map(IovaBase, 0, total);

        // The in-VMM emulated device writes device memory through this process's page tables.
        var uffd = Own(new UserfaultfdTracker([new HostMemoryRegion(Memory.Address + (nint)options.GuestBytes, options.GuestBytes, options.DeviceBytes)], "uffd(vmm-device)"));

        Harvester.Add(vcpuTracker, TrackerFaultPolicy.FailRound);
        if (!options.VcpuOnly)
        {
            Harvester.Add(iommuTracker, spaceA, TrackerFaultPolicy.MarkCoverageDirty);
            Harvester.Add(deviceTracker, spaceB, options.DevicePolicy);
            Harvester.Add(uffd, TrackerFaultPolicy.FailRound);
        }
    }

    /// <summary>The shared guest-page bitmap.</summary>
    public SparseDirtyBitmap Shared { get; }

    /// <summary>Every tracker, read in parallel.</summary>
    public ParallelHarvester Harvester { get; }

    /// <summary>Guest memory, RAM then device memory.</summary>
    public GuestMemoryView Memory { get; }

    /// <summary>Whether the vCPU is a real KVM guest.</summary>
    public bool UsesKvm { get; }

    /// <summary>The boot-sector guest the vCPU runs (KVM only): its working set is all of RAM above 1 MiB.</summary>
    public BootGuest? Guest { get; }

    /// <summary>The guest of a sample VM: RAM above 1 MiB, paced to the options' rate at this TSC frequency.</summary>
    public static BootGuest GuestFor(MigrationOptions options, uint tscKhz) =>
        BootGuest.Paced(256, options.WorkingSetBytes != 0 ? options.WorkingSetBytes / 4096 : (options.GuestBytes / 4096) - 256, options.PagesPerSecond, tscKhz);

    /// <summary>
    /// Whether the vCPU's dirty ring wedged: the vCPU stopped in its run loop, every slot is marked dirty, and the
    /// migration finishes with stop-copy (nothing is lost; the guest cannot run on in ring mode).
    /// </summary>
    public bool RingWedged => _ringTracker?.IsWedged ?? false;

    /// <summary>Each vCPU's dirty rate from its ring, from now on; <see langword="null"/> with the dirty bitmap.</summary>
    public VcpuDirtyRates? MeasureVcpuDirtyRates() => _ringTracker is null ? null : new VcpuDirtyRates(_ringTracker);

    /// <summary>Ring-full exits the run loop handled and ring overflows the tracker covered (ring mode).</summary>
    public (long Overflows, long Resynchronizations, bool Wedged)? RingStatus => _ringTracker is null ? null : (_ringTracker.Overflows, _ringTracker.Resynchronizations, _ringTracker.IsWedged);

    /// <summary>Guest memory pages resident in this process (<c>mincore</c>); 0 without a KVM guest.</summary>
    public ulong ResidentPages => _vmm?.ResidentPages() ?? 0;

    /// <summary>Pages in guest memory.</summary>
    public ulong Pages => Memory.Size / 4096;

    /// <summary>The fraction of time the KVM guest's vCPU is kept out of the guest (<see cref="SampleVmm.Throttle"/>); 0 without KVM.</summary>
    public double Throttle
    {
        get => _vmm?.Throttle ?? 0;
        set
        {
            if (_vmm is not null)
            {
                _vmm.Throttle = value;
            }
        }
    }

    /// <summary>Passes the guest finished (its serial port writes); 0 without KVM.</summary>
    public long Passes => _vmm?.SerialBytes ?? 0;

    /// <summary>Pages the guest has written since it started (<see cref="BootGuest.PagesWritten"/>).</summary>
    public long GuestPagesWritten => Guest?.PagesWritten(Passes, Memory) ?? 0;

    /// <summary>
    /// Starts dirty tracking: the migration begins. Call it before the first full copy: every write from here on is
    /// logged, and every write before it is in memory when the full copy reads it.
    /// </summary>
    public void BeginTracking()
    {
        Harvester.StartTracking();
        if (_options.InjectDeviceFaults)
        {
            _loggingDevice.InjectDeviceError(); // the first pre-copy round meets it; the writer injects more later
        }
    }

    /// <summary>Makes nic-b's dirty logger fail (a sticky firmware error) until the harvester restarts its tracker.</summary>
    public void InjectDeviceFault() => _loggingDevice.InjectDeviceError();

    /// <summary>Starts the writers: the vCPU, both DMA devices, the in-VMM device. Tracking starts with the migration.</summary>
    public void Start()
    {
        int burst = Math.Max(1, _options.PagesPerSecond / 100); // every 10 ms
        ulong guestPages = _options.GuestBytes / 4096, devicePages = _options.DeviceBytes / 4096;
        if (_vmm is not null)
        {
            // The vCPU runs the boot guest in its own run loop until paused.
            // A full ring exits to this loop, which reaps it; a wedged ring (this host's rings can overshoot) stops the vCPU.
            StartVcpu();
        }

        else
        {
            StartWriter("simulated-vcpu", value =>
            {
                var random = new Random((int)value);
                for (int i = 0; i < burst; i++)
                {
                    ulong page = 2 + (ulong)random.NextInt64((long)guestPages - 2);
                    BitConverter.TryWriteBytes(Memory.Slice(page * 4096, 8), value);
                    _simulatedVcpuTracker!.Write(page * 4096);
                }
            });
        }

        if (_options.VcpuOnly)
        {
            return;
        }

        StartWriter("nic-a", value => Dma(_iommuDevice, value, burst, guestPages + devicePages));
        int nicBursts = 0;
        StartWriter("nic-b", value =>
        {
            if (_options.InjectDeviceFaults && ++nicBursts % 25 == 0)
            {
                _loggingDevice.InjectDeviceError(); // every REPORT fails until the harvester restarts the tracker
            }

            Dma(_loggingDevice, value, burst, guestPages + devicePages);
        });
        StartWriter("vmm-device", value =>
        {
            var random = new Random((int)value ^ 0x5eed);
            for (int i = 0; i < burst; i++)
            {
                ulong page = guestPages + (ulong)random.NextInt64((long)devicePages);
                BitConverter.TryWriteBytes(Memory.Slice((page * 4096) + 24, 8), value);
            }
        });
    }

    /// <summary>
    /// What travels with memory once paused, as named state records: the vCPU's registers (KVM's structs, as the
    /// sample's VMM takes them); the emulated devices here keep no state outside guest memory.
    /// </summary>
    public IEnumerable<(string Name, byte[] State)> SaveState()
    {
        if (_vmm is not null)
        {
            yield return ("vcpu0", _vmm.SaveVcpuState());
        }
    }

    /// <summary>
    /// Stops the vCPU alone and waits until it left the guest: memory then holds a state the guest's invariant holds
    /// in, for a snapshot. <see cref="ResumeVcpu"/> lets it run on.
    /// </summary>
    public void PauseVcpu()
    {
        _vcpuPause.Cancel();
        _vcpu?.Join();
    }

    /// <summary>Runs the vCPU again after <see cref="PauseVcpu"/>.</summary>
    public void ResumeVcpu()
    {
        _vcpuPause.Dispose();
        _vcpuPause = new CancellationTokenSource();
        StartVcpu();
    }

    private void StartVcpu()
    {
        SampleVmm vmm = _vmm!;
        CancellationToken pause = _vcpuPause.Token;
        Func<bool>? ringFull = _ringTracker is null ? null : () => _ringTracker.HandleRingFull() == DirtyRingFullOutcome.Reaped;
        _vcpu = new Thread(() => vmm.RunUntilPaused(pause, ringFull)) { IsBackground = true, Name = "vcpu0" };
        _writers.Add(_vcpu);
        _vcpu.Start();
    }

    /// <summary>Pauses every writer (the vCPU first) and waits until they stopped: stop-copy begins.</summary>
    public void Pause()
    {
        _vcpuPause.Cancel();
        _stop = true;
        foreach (Thread writer in _writers)
        {
            writer.Join();
        }
    }

    /// <summary>Runs every writer again after <see cref="Pause"/>: the migration failed before the guest could run elsewhere.</summary>
    public void Resume()
    {
        _writers.Clear();
        _vcpuPause.Dispose();
        _vcpuPause = new CancellationTokenSource();
        _stop = false;
        Start();
    }

    public void Dispose()
    {
        Pause();
        Harvester.Dispose();
        foreach (IDisposable d in _owned)
        {
            d.Dispose();
        }

        _dmaMemory.Dispose();
        Shared.Dispose();
        _ring?.Dispose();
        _vm?.Dispose();
        _vmHandle?.Dispose();
        _vmm?.Dispose();
        _vcpuPause.Dispose();
        _simulatedRam?.Dispose();
    }

    private static void Dma(EmulatedDmaDevice device, ulong value, int burst, ulong pages)
    {
        var random = new Random((int)(value * 31) ^ device.Name.Length);
        for (int i = 0; i < burst; i++)
        {
            ulong page = 2 + (ulong)random.NextInt64((long)pages - 2);
            device.DmaWriteUInt64(IovaBase + (page * 4096) + (device.Name == "nic-a" ? 8UL : 16UL), value);
        }
    }

    private void StartWriter(string name, Action<ulong> burst)
    {
        var thread = new Thread(() =>
        {
            ulong value = (ulong)_options.Seed << 32;
            while (!_stop)
            {
                burst(++value);
                Thread.Sleep(10);
            }
        })
        { IsBackground = true, Name = name };
        _writers.Add(thread);
        thread.Start();
    }

    private T Own<T>(T disposable)
        where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }
}
