// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.Linq;
using DirtyLog.Native;

namespace DirtyLog.Tracking.Ports;

/// <summary>The real <see cref="IKvmDirtyLogPort"/> and <see cref="IKvmDirtyRingPort"/>: a <see cref="KvmVm"/> and the dirty rings of its vCPUs.</summary>
/// <remarks>Owns neither the VM nor the rings. Thread safety: as <see cref="KvmVm"/> and <see cref="KvmDirtyRing"/> (one harvester per ring).</remarks>
public sealed class KvmVmPort : IKvmDirtyLogPort, IKvmDirtyRingPort
{
    private readonly KvmVm _vm;
    private readonly KvmDirtyRing[] _rings;

    /// <summary>Creates the port of a VM, with the rings of its vCPUs when it runs in ring mode.</summary>
    /// <param name="vm">The VM.</param>
    /// <param name="rings">The vCPUs' rings (ring mode); none for the dirty bitmap.</param>
    /// <exception cref="ArgumentException">Rings are given but the VM has no dirty ring.</exception>
    public KvmVmPort(KvmVm vm, IEnumerable<KvmDirtyRing>? rings = null)
    {
        ArgumentNullException.ThrowIfNull(vm);
        _vm = vm;
        _rings = rings?.ToArray() ?? [];
        if (_rings.Length != 0 && vm.DirtyRingEntries == 0)
        {
            throw new ArgumentException("The VM has no dirty ring: enable it before creating vCPUs.", nameof(rings));
        }
    }

    /// <inheritdoc/>
    public string Name => _vm.Handle.Path;

    /// <inheritdoc/>
    public long SlotTableVersion => _vm.SlotTableVersion;

    /// <inheritdoc/>
    public bool ManualProtect => _vm.ManualDirtyLogProtect;

    /// <inheritdoc/>
    public uint RingEntries => _vm.DirtyRingEntries;

    /// <inheritdoc/>
    public int RingCount => _rings.Length;

    /// <inheritdoc/>
    public IReadOnlyList<KvmMemorySlot> GetSlots() => _vm.GetSlots();

    /// <inheritdoc/>
    public void SetDirtyLogging(uint slotId, bool enable) => _vm.SetMemorySlot(_vm.GetSlot(slotId) with { LogDirtyPages = enable });

    /// <inheritdoc/>
    public void GetDirtyLog(uint slotId, Span<ulong> bitmap) => _vm.GetDirtyLog(slotId, bitmap);

    /// <inheritdoc/>
    public void ClearDirtyLog(uint slotId, ulong firstPage, uint pageCount, ReadOnlySpan<ulong> bitmap) =>
        _vm.ClearDirtyLog(slotId, firstPage, pageCount, bitmap);

    /// <inheritdoc/>
    public int HarvestRing<TVisitor>(int ring, ref TVisitor visitor)
        where TVisitor : struct, IDirtyRingVisitor => _rings[ring].Harvest(ref visitor);

    /// <inheritdoc/>
    public int ResetDirtyRings() => _vm.ResetDirtyRings();
}
