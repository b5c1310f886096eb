// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Linq;
using DirtyLog.Tracking;

namespace DirtyLog.Mapping;

/// <summary>Checks of arguments, made before anything changes.</summary>
public sealed partial class IoAddressSpace
{
    private void CheckTracker(IDirtyTracker tracker)
    {
        ArgumentNullException.ThrowIfNull(tracker);
        if (tracker.AddressSpace != DirtyAddressSpace.Iova(Id))
        {
            throw new ArgumentException($"{tracker.Name} reports {tracker.AddressSpace}, not IOVA space {Id}.", nameof(tracker));
        }

        if (_iommuTrackers.Contains(tracker) || _deviceTrackers.Contains(tracker))
        {
            throw new ArgumentException($"{tracker.Name} is attached already.", nameof(tracker));
        }
    }

    private void CheckRange(ulong iova, ulong length, string paramName)
    {
        ulong align = _backend.IovaAlignment;
        if (length == 0 || ((iova | length) & (align - 1)) != 0)
        {
            throw new ArgumentException($"IOVA 0x{iova:x} + 0x{length:x} is empty or not aligned to {align} bytes.", paramName);
        }

        if (iova + length < iova && iova + length != 0)
        {
            throw new ArgumentException($"IOVA 0x{iova:x} + 0x{length:x} wraps around.", paramName);
        }

        if (iova + length == 0)
        {
            throw new ArgumentException($"IOVA 0x{iova:x} + 0x{length:x} reaches the end of the 64-bit space.", paramName);
        }
    }

    private void CheckGuest(ulong guestAddress, ulong length)
    {
        // In pages, not bytes: a 64-bit bitmap's byte size (2^64) does not fit a ulong.
        ulong last = guestAddress + length - 1;
        if ((guestAddress & (_backend.IovaAlignment - 1)) != 0 || length == 0 || last < guestAddress
            || (last >> _target.PageShift) >= _target.PageCount)
        {
            throw new ArgumentException($"Guest range 0x{guestAddress:x} + 0x{length:x} is unaligned or outside the shared bitmap's {_target.AddressWidth}-bit address space.", nameof(guestAddress));
        }
    }
}
