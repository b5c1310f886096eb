// Licensed under the MIT License. See LICENSE in the repository root.

using System.Threading;
using System.Threading.Tasks;

namespace DirtyLog.Migration.Sessions;

/// <summary>What the destination VMM does for its migration session: load state, resume the guest.</summary>
/// <remarks>
/// Thread safety: the session calls the hooks one at a time, from its own task (the thread its RunAsync runs on), and only after the whole image arrived and checked
/// (every record's checksum and the chained checksum of the end). A hook that throws makes the destination refuse
/// the migration, and the source resumes its guest: a <see cref="ResumeAsync"/> that throws must leave nothing
/// running here.
/// </remarks>
public interface IMigrationDestinationHooks
{
    /// <summary>Loads one state section into the destination's vCPUs or devices; called once per section, in the order sent.</summary>
    /// <param name="section">The section.</param>
    /// <param name="cancellationToken">The session's cancellation.</param>
    /// <returns>A task that completes once the section is loaded.</returns>
    ValueTask LoadStateAsync(MigrationStateSection section, CancellationToken cancellationToken);

    /// <summary>Resumes the guest here: called once, after every section was loaded. From its return the guest runs here.</summary>
    /// <param name="cancellationToken">The session's cancellation.</param>
    /// <returns>A task that completes once the guest runs.</returns>
    ValueTask ResumeAsync(CancellationToken cancellationToken);
}
