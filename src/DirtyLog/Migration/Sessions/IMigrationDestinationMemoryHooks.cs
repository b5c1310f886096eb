// Licensed under the MIT License. See LICENSE in the repository root.

using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Tracking;

namespace DirtyLog.Migration.Sessions;

/// <summary>
/// What a destination VMM that maps guest memory as the source announces it does for its session: map a region (at
/// the start, or plugged in on the source while the migration runs) and let one go (unplugged there). The destination
/// hooks implement it besides <see cref="IMigrationDestinationHooks"/> when the VMM wants this; without it, every
/// region the source announces must already lie in the destination's <see cref="Memory.GuestMemoryMap"/>.
/// </summary>
/// <remarks>
/// <para>Unlike the state and resume hooks, these run while the stream is received, before any page of the region is
/// written, and what the source announces is not yet checked as a whole: a region comes from the network. The
/// session has checked that it is page aligned, non-empty, inside the 64-bit space and overlaps no region announced
/// before; the hook decides whether this guest may have it (its configured maximum memory, its slots) and throws to
/// refuse it, which refuses the migration: the source resumes its guest.</para>
/// <para>Thread safety: called one at a time from the session's receive loop, never at once with another hook.</para>
/// </remarks>
public interface IMigrationDestinationMemoryHooks
{
    /// <summary>
    /// Maps guest memory for a region the source announced and adds it to the destination's map (as one region or
    /// inside one), before its first page arrives. After it returns, the range must lie inside one region of the map.
    /// </summary>
    /// <param name="region">The guest-physical range, in bytes.</param>
    /// <param name="cancellationToken">The session's cancellation.</param>
    /// <returns>A task that completes once the memory is mapped and in the map.</returns>
    ValueTask AddRegionAsync(AddressRange region, CancellationToken cancellationToken);

    /// <summary>
    /// Lets go of a region the source unplugged: no page of it is written after this call, and it is no longer part of
    /// the image (the memory digest leaves it out). The VMM may remove it from its map and unmap it.
    /// </summary>
    /// <param name="region">The guest-physical range, in bytes, as it was announced.</param>
    /// <param name="cancellationToken">The session's cancellation.</param>
    /// <returns>A task that completes once the VMM let the region go.</returns>
    ValueTask RemoveRegionAsync(AddressRange region, CancellationToken cancellationToken);
}
