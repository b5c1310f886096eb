// Licensed under the MIT License. See LICENSE in the repository root.

using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Migration;
using DirtyLog.Migration.Sessions;

// The live-migration guide's two hook interfaces, as one block (its snippet) under the library's names, in a namespace
// of their own; HookInterfaceTests holds them to the library's.
namespace DirtyLog.Tests.Documentation.Shown;

// snippet: hooks
// The source VMM: called one at a time, from the session's task.
public interface IMigrationSourceHooks
{
    ValueTask PauseAsync(CancellationToken cancellationToken);   // nothing writes guest memory after it returns
    ValueTask ResumeAsync(CancellationToken cancellationToken);  // only when the guest cannot run elsewhere
    ValueTask<IReadOnlyList<MigrationStateSection>> SaveStateAsync(CancellationToken cancellationToken);
    void Throttle(ThrottleRequest request);                      // auto-converge: slow all vCPUs, or each by its rate
}

// The destination VMM: called only after the whole image arrived and checked.
public interface IMigrationDestinationHooks
{
    ValueTask LoadStateAsync(MigrationStateSection section, CancellationToken cancellationToken);
    ValueTask ResumeAsync(CancellationToken cancellationToken);  // if it throws, nothing may run here
}
// end of snippet
