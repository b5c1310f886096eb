// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration.PostCopy;

/// <summary>
/// Where a post-copy destination's requests for missing pages go: the VMM's channel to the source, on which requests
/// never wait behind pushed pages. Each page that a thread touched and that is not valid here yet is requested once.
/// </summary>
/// <remarks>Thread safety: called on the fault-reading thread, one request at a time; it must not block (queue the request and return).</remarks>
public interface IPostCopyPageRequests
{
    /// <summary>Asks the source for a page; the answer comes back through <see cref="PostCopyMemory.Install"/>.</summary>
    /// <param name="page">The page, from guest-physical address 0.</param>
    void Request(ulong page);
}
